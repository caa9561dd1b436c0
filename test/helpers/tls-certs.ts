/**
 * A throwaway certificate authority and a server certificate it signed, made with the
 * machine's openssl for one test run: for `https:` upstreams.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  /** The CA certificate (PEM), and its path. */
  ca: string;
  caFile: string;
  /** The server's key and certificate (PEM). */
  key: string;
  cert: string;
  remove(): void;
}

/** `names`: the server certificate's subjectAltName entries, e.g. `DNS:localhost`, `IP:127.0.0.1`. */
export function makeTestCerts(names: string[]): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-certs-"));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl("req", "-x509", ...ec, "-days", "2", "-subj", "/CN=Portcullis test CA", "-keyout", at("ca.key"), "-out", at("ca.pem"));
  openssl("req", ...ec, "-subj", "/CN=upstream", "-keyout", at("server.key"), "-out", at("server.csr"));
  writeFileSync(at("server.ext"), `subjectAltName=${names.join(",")}\n`);
  openssl(
    "x509",
    "-req",
    "-in",
    at("server.csr"),
    "-CA",
    at("ca.pem"),
    "-CAkey",
    at("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    at("server.ext"),
    "-out",
    at("server.pem"),
  );
  return {
    ca: readFileSync(at("ca.pem"), "utf8"),
    caFile: at("ca.pem"),
    key: readFileSync(at("server.key"), "utf8"),
    cert: readFileSync(at("server.pem"), "utf8"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
