/**
 * A minimal client of a child's V8 inspector (`node --inspect=127.0.0.1:<port>`), over Node's
 * global WebSocket: enough to force a full garbage collection, so that the heap a process really
 * holds (live objects) can be read instead of its RSS, which V8 lets grow until it collects.
 */

export interface Inspector {
  /** A full GC in the child (`HeapProfiler.collectGarbage`); resolves when it is done. */
  collectGarbage(): Promise<void>;
  close(): void;
}

export async function connectInspector(port: number): Promise<Inspector> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl?: string }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error(`no inspector target on port ${port}`);
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`inspector on port ${port} refused the connection`)), { once: true });
  });
  const waiting = new Map<number, () => void>();
  ws.addEventListener('message', (event: MessageEvent) => {
    const { id } = JSON.parse(String(event.data)) as { id?: number };
    if (id === undefined) return;
    waiting.get(id)?.();
    waiting.delete(id);
  });
  let nextId = 1;
  return {
    collectGarbage() {
      const id = nextId++;
      return new Promise<void>((resolve) => {
        waiting.set(id, resolve);
        ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      });
    },
    close() {
      ws.close();
    },
  };
}
