// The edge's live OpenAPI document in Swagger UI (served at /docs). "Try it out" calls the edge
// that serves this page (listed first, before the document's default address), and
// validatorUrl: null keeps the page from calling the public validator: everything it loads
// comes from this edge.
fetch("/openapi.json")
  .then((resp) => resp.json())
  .then((spec) => {
    spec.servers = [{ url: window.location.origin, description: "this edge" }, ...(spec.servers ?? [])];
    window.ui = SwaggerUIBundle({
      spec,
      dom_id: "#swagger-ui",
      deepLinking: true,
      displayOperationId: true,
      validatorUrl: null,
    });
  });
