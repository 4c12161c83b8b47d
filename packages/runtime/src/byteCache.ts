/**
 * A map bounded by the encoded bytes of its values: a hit moves an entry to
 * the back, and setting past the budget drops the least recently used
 * entries (never the one just set).
 */
export class ByteCache<K, V> {
  private readonly entries = new Map<K, { value: V; bytes: number }>();
  private total = 0;

  constructor(private readonly budget: number) {}

  /** Number of entries held. */
  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit.value;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The entry's size in bytes, or 0 when absent. */
  bytesOf(key: K): number {
    return this.entries.get(key)?.bytes ?? 0;
  }

  set(key: K, value: V, bytes: number): void {
    this.delete(key);
    this.entries.set(key, { value, bytes });
    this.total += bytes;
    for (const [k, e] of this.entries) {
      if (this.total <= this.budget || k === key) break;
      this.entries.delete(k);
      this.total -= e.bytes;
    }
  }

  /** Drops every entry whose key `drop` picks. */
  deleteWhere(drop: (key: K) => boolean): void {
    for (const k of this.entries.keys()) if (drop(k)) this.delete(k);
  }

  private delete(key: K): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.total -= e.bytes;
  }
}
