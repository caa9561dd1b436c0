/**
 * A real DNS server on loopback for tests: UDP on port 0, answering TXT queries from
 * a table the test edits (RFC 1035 §4 message format, §3.3.14 TXT RDATA). Unknown
 * names get NXDOMAIN; known names asked for another type get an empty NOERROR
 * (NODATA); names set with `servfail` get SERVFAIL. Every query is recorded, so a
 * test can show the control plane really asked.
 */
import { createSocket, type Socket } from "node:dgram";
import type { AddressInfo } from "node:net";

const TYPE_TXT = 16;
const CLASS_IN = 1;
const RCODE = { noError: 0, servFail: 2, nxDomain: 3 } as const;

export interface DnsQuery {
  name: string;
  type: number;
}

export interface TestDnsServer {
  port: number;
  /** `127.0.0.1:<port>`, for DNS_SERVERS. */
  address: string;
  queries: DnsQuery[];
  setTxt(name: string, values: string[]): void;
  remove(name: string): void;
  servfail(name: string): void;
  close(): Promise<void>;
}

function readName(msg: Buffer, start: number): { name: string; end: number } | null {
  const labels: string[] = [];
  let at = start;
  for (let guard = 0; guard < 128; guard++) {
    const len = msg[at];
    if (len === undefined) return null;
    if (len === 0) return { name: labels.join("."), end: at + 1 };
    // Queries carry no compression pointers in the question; refuse them rather than loop.
    if (len & 0xc0) return null;
    labels.push(msg.subarray(at + 1, at + 1 + len).toString("latin1"));
    at += 1 + len;
  }
  return null;
}

function txtRdata(values: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const value of values) {
    let bytes = Buffer.from(value, "utf8");
    // A character-string holds at most 255 bytes; longer values are split (RFC 7208 §3.3 does the same).
    do {
      const chunk = bytes.subarray(0, 255);
      parts.push(Buffer.from([chunk.length]), chunk);
      bytes = bytes.subarray(255);
    } while (bytes.length > 0);
  }
  return Buffer.concat(parts);
}

export async function startDnsServer(): Promise<TestDnsServer> {
  const records = new Map<string, string[] | "servfail">();
  const queries: DnsQuery[] = [];
  const socket: Socket = createSocket("udp4");

  socket.on("message", (msg, rinfo) => {
    if (msg.length < 12) return;
    const qdcount = msg.readUInt16BE(4);
    if (qdcount !== 1) return;
    const q = readName(msg, 12);
    if (!q || q.end + 4 > msg.length) return;
    const type = msg.readUInt16BE(q.end);
    const name = q.name.toLowerCase();
    queries.push({ name, type });
    const question = msg.subarray(12, q.end + 4);
    const entry = records.get(name);
    const answers: Buffer[] = [];
    let rcode: number = RCODE.nxDomain;
    if (entry === "servfail") rcode = RCODE.servFail;
    else if (entry) {
      rcode = RCODE.noError;
      if (type === TYPE_TXT) {
        // One TXT RR per value, each owner name a pointer to the question (0xc00c).
        for (const value of entry) {
          const rdata = txtRdata([value]);
          const rr = Buffer.alloc(12);
          rr.writeUInt16BE(0xc00c, 0);
          rr.writeUInt16BE(TYPE_TXT, 2);
          rr.writeUInt16BE(CLASS_IN, 4);
          rr.writeUInt32BE(0, 6);
          rr.writeUInt16BE(rdata.length, 10);
          answers.push(rr, rdata);
        }
      }
    }
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // id
    const rd = msg[2]! & 0x01;
    header[2] = 0x80 | 0x04 | rd; // QR, AA, RD copied
    header[3] = 0x80 | rcode; // RA, RCODE
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length / 2, 6);
    socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address);
  });

  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  const port = (socket.address() as AddressInfo).port;
  const key = (name: string) => name.toLowerCase().replace(/\.$/, "");
  return {
    port,
    address: `127.0.0.1:${port}`,
    queries,
    setTxt: (name, values) => void records.set(key(name), values),
    remove: (name) => void records.delete(key(name)),
    servfail: (name) => void records.set(key(name), "servfail"),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
