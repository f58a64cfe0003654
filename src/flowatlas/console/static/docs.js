// The offline API docs: Swagger UI (npm swagger-ui-dist, served from /vendor) over /openapi.json.
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
