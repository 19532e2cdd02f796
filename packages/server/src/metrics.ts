/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text exposition format
 * (version 0.0.4). Enough for the series vLLM users watch; no dependency.
 */
type Labels = Readonly<Record<string, string>>;

const labelKey = (labels: Labels) => JSON.stringify(Object.entries(labels).sort(([left], [right]) => left.localeCompare(right)));

function renderLabels(labels: Labels, extra?: [string, string]): string {
  const entries = Object.entries(labels);
  if (extra) entries.push(extra);
  if (entries.length === 0) return '';
  const escape = (value: string) => value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${entries.map(([name, value]) => `${name}="${escape(value)}"`).join(',')}}`;
}

function renderNumber(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isNaN(value)) return 'NaN';
  return String(value);
}

interface Metric {
  readonly name: string;
  render(): string;
}

abstract class LabelledMetric<T> implements Metric {
  protected readonly series = new Map<string, { labels: Labels; value: T }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {}

  protected entry(labels: Labels, initial: () => T): { labels: Labels; value: T } {
    const key = labelKey(labels);
    let entry = this.series.get(key);
    if (entry === undefined) {
      entry = { labels, value: initial() };
      this.series.set(key, entry);
    }
    return entry;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.series.values()) lines.push(...this.renderSeries(labels, value));
    return lines.join('\n');
  }

  protected abstract renderSeries(labels: Labels, value: T): string[];
}

export class Counter extends LabelledMetric<number> {
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }

  inc(amount = 1, labels: Labels = {}): void {
    if (amount < 0) throw new RangeError(`counter ${this.name} cannot decrease`);
    this.entry(labels, () => 0).value += amount;
  }

  /** Makes a labelled series appear (at 0) before its first increment. */
  touch(labels: Labels): void {
    this.entry(labels, () => 0);
  }

  protected renderSeries(labels: Labels, value: number): string[] {
    return [`${this.name}${renderLabels(labels)} ${renderNumber(value)}`];
  }
}

export class Gauge extends LabelledMetric<number> {
  constructor(name: string, help: string) {
    super(name, help, 'gauge');
  }

  set(value: number, labels: Labels = {}): void {
    this.entry(labels, () => 0).value = value;
  }

  protected renderSeries(labels: Labels, value: number): string[] {
    return [`${this.name}${renderLabels(labels)} ${renderNumber(value)}`];
  }
}

interface HistogramState {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends LabelledMetric<HistogramState> {
  constructor(
    name: string,
    help: string,
    readonly buckets: readonly number[],
  ) {
    super(name, help, 'histogram');
  }

  observe(value: number, labels: Labels = {}): void {
    const state = this.entry(labels, () => ({ counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 })).value;
    for (let index = 0; index < this.buckets.length; index += 1) if (value <= this.buckets[index]!) state.counts[index]! += 1;
    state.sum += value;
    state.count += 1;
  }

  protected renderSeries(labels: Labels, state: HistogramState): string[] {
    const lines = this.buckets.map(
      (bound, index) => `${this.name}_bucket${renderLabels(labels, ['le', renderNumber(bound)])} ${state.counts[index]}`,
    );
    lines.push(`${this.name}_bucket${renderLabels(labels, ['le', '+Inf'])} ${state.count}`);
    lines.push(`${this.name}_sum${renderLabels(labels)} ${renderNumber(state.sum)}`);
    lines.push(`${this.name}_count${renderLabels(labels)} ${state.count}`);
    return lines;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  register<T extends Metric>(metric: T): T {
    this.metrics.push(metric);
    return metric;
  }

  /** The text exposition of every metric, ending with a newline. */
  render(): string {
    return `${this.metrics.map((metric) => metric.render()).join('\n')}\n`;
  }
}

export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';
