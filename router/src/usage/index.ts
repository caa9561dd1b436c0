/** Usage metering, off the request path: counted per tenant and month, flushed to the shared store. */
export { FLUSH_SLICE, UsageMeter } from "./meter.ts";
