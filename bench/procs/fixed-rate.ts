/**
 * The open-loop fixed-rate client as a process of its own: latency is measured by a
 * process that does nothing else (the orchestrator also runs the control plane and
 * the key service, whose work would otherwise stall the client's timers and count
 * as the router's latency). Answers `{type: "answer", answer: RateResult}` and exits.
 */
import { type HostSet, runFixedRate } from "../load.ts";
import { settings } from "./common.ts";

const s = settings<{ port: number; hosts: HostSet; rate: number; seconds: number; warmup?: number }>();
const result = await runFixedRate(s.port, s.hosts, s.rate, s.seconds, s.warmup);
process.send?.({ type: "result", result }, () => process.exit(0));
