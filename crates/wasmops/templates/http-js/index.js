// An HTTP handler: the fetch event of the JavaScript engine answers every
// request that reaches this component.
addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  event.respondWith(
    new Response(`Hello from JavaScript! path=${url.pathname}${url.search}\n`, {
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    }),
  );
});
