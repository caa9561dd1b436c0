/**
 * The Kubernetes manifests: every overlay renders (`kubectl kustomize`, kustomize v5),
 * every rendered object validates against the Kubernetes schemas (kubernetes-models,
 * offline), and the objects hold together the way the deployment depends on: probes
 * on ports that exist, selectors that match their pods, the autoscaler and budgets
 * on the router, a grace period that covers the drain, secrets referenced and never
 * inlined, and network policies that keep the key service and the ops ports private.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as apps from "kubernetes-models/apps/v1";
import * as autoscaling from "kubernetes-models/autoscaling/v2";
import * as batch from "kubernetes-models/batch/v1";
import * as core from "kubernetes-models/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as policy from "kubernetes-models/policy/v1";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const OVERLAYS = ["production", "staging"];
const SECRET_KEYS = ["ADMIN_TOKEN", "KEY_SERVICE_TOKEN", "CONTEXT_SIGNING_SECRET", "SESSION_SECRET", "DATABASE_URL", "REDIS_URL"];

// Rendered manifests are walked as plain data.
type Obj = any;

const MODELS: Record<string, new (data: Obj) => { validate(): void }> = {
  "apps/v1/Deployment": apps.Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": autoscaling.HorizontalPodAutoscaler,
  "batch/v1/Job": batch.Job,
  "v1/Service": core.Service,
  "v1/Namespace": core.Namespace,
  "networking.k8s.io/v1/NetworkPolicy": networking.NetworkPolicy,
  "policy/v1/PodDisruptionBudget": policy.PodDisruptionBudget,
};

function render(overlay: string): Obj[] {
  let out: string;
  try {
    out = execFileSync("kubectl", ["kustomize", `${ROOT}deploy/kubernetes/overlays/${overlay}`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error("kubectl (with kustomize v5, Kubernetes ≥ 1.27) is needed to render the manifests");
    throw new Error(`kubectl kustomize ${overlay} failed: ${e.stderr ?? e.message}`);
  }
  return parseAllDocuments(out).map((d) => d.toJS());
}

const byKind = (objects: Obj[], kind: string) => objects.filter((o) => o.kind === kind);
const named = (objects: Obj[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("the validator itself", () => {
  it("refuses a broken object (so a pass below means something)", () => {
    const broken = new apps.Deployment({
      metadata: { name: "x" },
      spec: { replicas: "three" as unknown as number, selector: {}, template: { spec: { containers: [{ name: "c" }] } } },
    });
    expect(() => broken.validate()).toThrow(/replicas/);
  });
});

describe.each(OVERLAYS)("deploy/kubernetes, overlay %s", (overlay) => {
  const objects = render(overlay);

  it("renders only kinds it knows, each valid against the Kubernetes schemas", () => {
    expect(objects.length).toBeGreaterThan(10);
    for (const o of objects) {
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      expect(Model, `${o.apiVersion} ${o.kind} ${o.metadata?.name}`).toBeDefined();
      expect(() => new (Model as NonNullable<typeof Model>)(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    }
  });

  it("has the three services, two control planes, the migration Job, and everything in the overlay's namespace", () => {
    const ns = byKind(objects, "Namespace")[0]?.metadata.name;
    expect(ns).toBeTruthy();
    for (const o of objects) if (o.kind !== "Namespace") expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe(ns);
    for (const name of ["portcullis-router", "portcullis-key-service", "portcullis-control-plane"]) {
      expect(named(objects, "Deployment", name), name).toBeDefined();
      expect(named(objects, "Service", name), name).toBeDefined();
    }
    expect(named(objects, "Deployment", "portcullis-control-plane").spec.replicas).toBeGreaterThanOrEqual(2);
    expect(named(objects, "Job", "portcullis-migrate").spec.template.spec.containers[0].command).toEqual([
      "node",
      "control-plane/src/db/migrate-cli.ts",
    ]);
  });

  it("selects its own pods: Deployments, Services, budgets and policies match the pod labels they mean", () => {
    for (const d of byKind(objects, "Deployment")) {
      const labels = d.spec.template.metadata.labels;
      expect(matches(d.spec.selector.matchLabels, labels), d.metadata.name).toBe(true);
      const service = named(objects, "Service", d.metadata.name);
      expect(matches(service.spec.selector, labels), `Service ${d.metadata.name}`).toBe(true);
      // No Service selects another component's pods.
      for (const other of byKind(objects, "Deployment")) {
        if (other !== d) expect(matches(service.spec.selector, other.spec.template.metadata.labels)).toBe(false);
      }
      const budget = named(objects, "PodDisruptionBudget", d.metadata.name);
      expect(budget, `PodDisruptionBudget ${d.metadata.name}`).toBeDefined();
      expect(matches(budget.spec.selector.matchLabels, labels)).toBe(true);
    }
  });

  it("probes every container on a port it declares, and sets resources on each", () => {
    for (const d of [...byKind(objects, "Deployment"), ...byKind(objects, "Job")]) {
      for (const c of d.spec.template.spec.containers) {
        const where = `${d.metadata.name}/${c.name}`;
        expect(c.resources?.requests?.cpu, where).toBeTruthy();
        expect(c.resources?.requests?.memory, where).toBeTruthy();
        expect(c.resources?.limits?.memory, where).toBeTruthy();
        expect(c.image, where).toMatch(/^registry\.example\.com\/portcullis:/);
        if (d.kind === "Job") continue;
        const ports = new Set((c.ports ?? []).map((p: Obj) => p.name));
        for (const probe of [c.readinessProbe, c.livenessProbe]) {
          expect(probe?.httpGet, where).toBeDefined();
          expect(ports.has(probe.httpGet.port), `${where} probes port ${probe.httpGet.port}`).toBe(true);
        }
      }
    }
    const router = named(objects, "Deployment", "portcullis-router").spec.template.spec.containers[0];
    expect(router.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "ops" });
  });

  it("gives the router a grace period that covers its preStop pause and its drain, an autoscaler and a zone spread", () => {
    const d = named(objects, "Deployment", "portcullis-router");
    const spec = d.spec.template.spec;
    const c = spec.containers[0];
    const drainMs = Number(c.env.find((e: Obj) => e.name === "DRAIN_TIMEOUT_MS")?.value ?? 25_000);
    const pause = Number(c.lifecycle.preStop.exec.command[1]);
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(pause + drainMs / 1000 + 5);
    const hpa = named(objects, "HorizontalPodAutoscaler", "portcullis-router");
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: "portcullis-router" });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(spec.topologySpreadConstraints.map((t: Obj) => t.topologyKey)).toContain("topology.kubernetes.io/zone");
    expect(d.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
  });

  it("references secrets and never inlines one", () => {
    expect(byKind(objects, "Secret")).toEqual([]);
    for (const d of [...byKind(objects, "Deployment"), ...byKind(objects, "Job")]) {
      for (const c of d.spec.template.spec.containers) {
        for (const e of c.env ?? []) {
          if (SECRET_KEYS.includes(e.name)) {
            expect(e.value, `${d.metadata.name}: ${e.name} inlined`).toBeUndefined();
            expect(e.valueFrom?.secretKeyRef, `${d.metadata.name}: ${e.name}`).toEqual({ name: "portcullis", key: e.name });
          }
        }
        for (const f of c.envFrom ?? []) expect(f.secretRef?.name ?? f.configMapRef?.name).toBe("portcullis");
      }
    }
    // The router gets only what it uses: no admin token, no database.
    const router = named(objects, "Deployment", "portcullis-router").spec.template.spec.containers[0];
    expect(router.envFrom).toBeUndefined();
    const refs = router.env.filter((e: Obj) => e.valueFrom?.secretKeyRef).map((e: Obj) => e.name);
    expect(refs).not.toContain("ADMIN_TOKEN");
    expect(refs).not.toContain("DATABASE_URL");
  });

  it("lets only routers reach the key service, and nothing outside monitoring reach an ops port", () => {
    const policies = byKind(objects, "NetworkPolicy");
    const deny = policies.find((p) => p.metadata.name === "portcullis-default-deny");
    expect(deny.spec.policyTypes).toEqual(["Ingress"]);
    expect(deny.spec.ingress).toBeUndefined();
    const routerLabels = named(objects, "Deployment", "portcullis-router").spec.template.metadata.labels;
    const opsPorts = new Set([9090, 9091, 9092]);
    for (const d of byKind(objects, "Deployment")) {
      const labels = d.spec.template.metadata.labels;
      // Every pod is under the default deny.
      expect(matches(deny.spec.podSelector.matchLabels, labels)).toBe(true);
      for (const p of policies) {
        if (p === deny || !matches(p.spec.podSelector.matchLabels, labels)) continue;
        for (const rule of p.spec.ingress ?? []) {
          for (const port of rule.ports ?? []) {
            if (opsPorts.has(port.port)) {
              expect(rule.from, `${p.metadata.name}: ops port ${port.port}`).toEqual([
                { namespaceSelector: { matchLabels: { "portcullis.io/monitoring": "true" } } },
              ]);
            }
            if (port.port === 8082) {
              expect(rule.from).toEqual([{ podSelector: { matchLabels: routerLabels } }]);
            }
          }
          // Only the router's public port is open to all.
          if (rule.from === undefined) {
            expect(d.metadata.name).toBe("portcullis-router");
            expect(rule.ports).toEqual([{ protocol: "TCP", port: 8080 }]);
          }
        }
      }
    }
  });
});
