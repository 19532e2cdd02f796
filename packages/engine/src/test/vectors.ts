/** `1 − cos(left, right)`: 0 for vectors pointing the same way, whatever their lengths. */
export function cosineDistance(left: ArrayLike<number>, right: ArrayLike<number>): number {
  let dot = 0;
  let leftNorm = 0;
  let rightNorm = 0;
  for (let index = 0; index < left.length; index += 1) {
    dot += left[index]! * right[index]!;
    leftNorm += left[index]! ** 2;
    rightNorm += right[index]! ** 2;
  }
  return 1 - dot / Math.sqrt(leftNorm * rightNorm);
}
