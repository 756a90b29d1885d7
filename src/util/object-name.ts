/**
 * A process-wide name for an object, for the `identity()` of stores whose jobs live in this
 * process (the memory store): equal for the same object, different for any other.
 */
const names = new WeakMap<object, number>();
let last = 0;

export function objectName(o: object): number {
  let name = names.get(o);
  if (name === undefined) names.set(o, (name = ++last));
  return name;
}
