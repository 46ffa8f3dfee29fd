// An HTTP handler in TypeScript: compiled by tsc, then made a component by
// componentize-js; the fetch event answers every request.
interface FetchEvent extends Event {
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
}

function greet(path: string): string {
  return `Hello from TypeScript! path=${path}\n`;
}

addEventListener('fetch', (event: Event) => {
  const fetchEvent = event as FetchEvent;
  const url = new URL(fetchEvent.request.url);
  fetchEvent.respondWith(
    new Response(greet(url.pathname + url.search), {
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    }),
  );
});
