/**
 * The tenant's request-body limit against the length a request declares. A body sent
 * without a length (chunked) is counted while it streams (`proxy/`) and cut when it
 * outgrows the limit.
 */
export function declaredTooLarge(maxBodyBytes: number | null, contentLength: string | undefined): boolean {
  return maxBodyBytes !== null && contentLength !== undefined && Number(contentLength) > maxBodyBytes;
}
