import type { Request } from './request';

/** The waiting queue. FCFS keeps arrival order (preempted requests go back to the front); priority sorts. */
export interface RequestQueue extends Iterable<Request> {
  readonly length: number;
  peek(): Request | undefined;
  popFront(): Request;
  add(request: Request): void;
  /** Puts back a request that was preempted (or could not be admitted after all). */
  prepend(request: Request): void;
  remove(request: Request): boolean;
}

/** First come, first served: an array used as a deque, with a moving head so popping the front is O(1). */
export class FcfsQueue implements RequestQueue {
  private items: Request[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  peek(): Request | undefined {
    return this.items[this.head];
  }

  popFront(): Request {
    const request = this.items[this.head];
    if (request === undefined) throw new RangeError('popFront on an empty queue');
    this.items[this.head] = undefined as unknown as Request;
    this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return request;
  }

  add(request: Request): void {
    this.items.push(request);
  }

  prepend(request: Request): void {
    if (this.head > 0) {
      this.head -= 1;
      this.items[this.head] = request;
    } else {
      this.items.unshift(request);
    }
  }

  remove(request: Request): boolean {
    const index = this.items.indexOf(request, this.head);
    if (index < 0) return false;
    this.items.splice(index, 1);
    return true;
  }

  *[Symbol.iterator](): IterableIterator<Request> {
    for (let index = this.head; index < this.items.length; index += 1) yield this.items[index]!;
  }
}

/** Lower `priority` first, then earlier arrival, then the order of `addRequest` (vLLM's priority policy). */
export function comparePriority(left: Request, right: Request): number {
  return left.priority - right.priority || left.arrivalTime - right.arrivalTime || left.sequence - right.sequence;
}

/** The priority policy's waiting queue: kept sorted by `comparePriority`. */
export class PriorityQueue implements RequestQueue {
  private readonly items: Request[] = [];

  get length(): number {
    return this.items.length;
  }

  peek(): Request | undefined {
    return this.items[0];
  }

  popFront(): Request {
    const request = this.items.shift();
    if (request === undefined) throw new RangeError('popFront on an empty queue');
    return request;
  }

  add(request: Request): void {
    let low = 0;
    let high = this.items.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (comparePriority(this.items[middle]!, request) <= 0) low = middle + 1;
      else high = middle;
    }
    this.items.splice(low, 0, request);
  }

  prepend(request: Request): void {
    this.add(request);
  }

  remove(request: Request): boolean {
    const index = this.items.indexOf(request);
    if (index < 0) return false;
    this.items.splice(index, 1);
    return true;
  }

  [Symbol.iterator](): IterableIterator<Request> {
    return this.items[Symbol.iterator]();
  }
}
