/** Tenant branding answered by the router: the branding JSON and the branded refusal pages. */
export { BRANDING_PATH, brandingJson } from "./json.ts";
export { brandedRefusalPage, escapeHtml, HTML_HEADERS, isBranded, wantsHtml } from "./page.ts";
