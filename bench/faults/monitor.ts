/**
 * Loaded with `--import` into every service process `npm run faults` starts. It only
 * watches: `uncaughtExceptionMonitor` changes nothing about what Node does next (an
 * unhandled rejection still ends the process, as in production), it only prints one
 * line the harness can count, naming the origin, before Node's own report.
 */
process.on("uncaughtExceptionMonitor", (error, origin) => {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  process.stderr.write(`[faults-monitor] ${origin}: ${text.replace(/\s+/g, " ").slice(0, 500)}\n`);
});
process.on("warning", (warning) => {
  process.stderr.write(`[faults-monitor] warning: ${warning.name}: ${warning.message.replace(/\s+/g, " ").slice(0, 300)}\n`);
});
