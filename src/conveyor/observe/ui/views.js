// The page's panels, built as DOM nodes from the management API's answers (text only, never HTML: names
// and messages come from users).

// An element with attributes and children (strings become text nodes).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function table(columns, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows),
  );
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function health(d) {
  const r = d.replicas || {};
  if (d.problem) return ["bad", "problem"];
  if (r.desired === 0) return ["idle", "scaled to zero"];
  if (r.ready >= r.desired) return ["ok", "healthy"];
  // The counts are the candidate's during a rollout: while it starts, the stable's replicas still answer.
  if (d.rollout && r.total > r.ready) return ["warn", "candidate starting"];
  return r.ready > 0 ? ["warn", "degraded"] : ["bad", "down"];
}

// The deployments list: one row each; `selected` is highlighted, a click calls `onSelect(name)`.
export function deploymentsList(deployments, selected, onSelect) {
  const rows = deployments.map((d) => {
    const [kind, word] = health(d);
    const r = d.replicas || {};
    return h(
      "tr",
      { class: d.name === selected ? "selected" : "", "data-deployment": d.name, tabindex: 0, onclick: () => onSelect(d.name), onkeydown: (e) => e.key === "Enter" && onSelect(d.name) },
      h("td", {}, h("span", { class: `dot ${kind}`, title: word }), d.name),
      h("td", {}, d.model || ""),
      h("td", { class: "num" }, `${r.ready ?? 0}/${r.desired ?? 0}`),
      h("td", {}, word),
    );
  });
  return table(["deployment", "model", "ready", "health"], rows, "No deployments yet: conveyor apply -f FILE");
}

// One deployment's status line, replicas and recent events (from GET /deployments/{name}).
export function deploymentFacts(d) {
  const [kind, word] = health(d);
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "model"), h("dd", {}, d.model || "?"),
    h("dt", {}, "revision"), h("dd", {}, String(d.revision)),
    h("dt", {}, "health"), h("dd", {}, h("span", { class: `dot ${kind}` }), word),
    h("dt", {}, "placement"), h("dd", {}, d.placement || ""),
    h("dt", {}, "endpoint"), h("dd", {}, h("code", {}, d.endpoint || "")),
  );
  const problem = d.problem ? h("p", { class: "problem" }, d.problem) : null;
  const replicas = table(
    ["replica", "version", "state", "address", "started", "restarts"],
    (d.instances || []).map((r) =>
      h(
        "tr",
        {},
        h("td", {}, h("code", {}, r.id || "")),
        h("td", {}, `v${r.version}`),
        h("td", {}, h("span", { class: `state ${r.state}` }, r.state)),
        h("td", {}, r.address || ""),
        h("td", {}, when(r.started_at)),
        h("td", { class: "num" }, String(r.restarts ?? 0)),
      ),
    ),
    "No replicas running.",
  );
  return { facts: [facts, problem], replicas };
}

export function eventsList(events) {
  return table(
    ["time", "kind", "message"],
    (events || []).map((e) => h("tr", {}, h("td", { class: "nowrap" }, when(e.time)), h("td", {}, e.kind), h("td", {}, e.message))),
    "No events.",
  );
}

// Drift as GET /deployments/{name}/drift gives it: per version what it is measured against, per feature
// the PSI, the mean shift (in reference standard deviations) and a status (ok, warn, drift).
export function driftTable(body) {
  const rows = [];
  const notes = [];
  for (const v of (body && body.versions) || []) {
    const reference = v.reference || {};
    if (!reference.available) {
      notes.push(h("p", { class: "muted" }, `v${v.version}: no drift measured (${reference.reason || "no reference sample"})`));
    }
    for (const f of v.features || []) {
      rows.push(
        h(
          "tr",
          { class: f.status ? `drift-${f.status}` : "" },
          h("td", {}, `v${v.version}`),
          h("td", {}, f.feature),
          h("td", { class: "num" }, f.psi === null || f.psi === undefined ? "" : f.psi.toFixed(3)),
          h("td", { class: "num" }, f.mean_shift === null || f.mean_shift === undefined ? "" : `${f.mean_shift.toFixed(2)} σ`),
          h("td", {}, f.status || ""),
        ),
      );
    }
  }
  const shown = rows.length ? table(["version", "feature", "PSI", "mean shift", "status"], rows, "") : null;
  if (!shown && !notes.length) return h("p", { class: "muted" }, "No drift data yet (no requests sampled).");
  return h("div", {}, shown, notes);
}

// Alerts as GET /api/v1/alerts lists them (firing, pending, then recently resolved); `null`: the control
// plane has no alerts route.
export function alertsList(alerts) {
  if (alerts === null) return h("p", { class: "muted" }, "No alerts (this control plane evaluates none).");
  const active = alerts.filter((a) => a.state !== "resolved");
  const head = active.length ? h("ul", { class: "alerts" }, active.map(alertItem)) : h("p", { class: "muted ok-text" }, "No alerts firing.");
  return h("div", {}, head, recentlyResolved(alerts));
}

function alertItem(a) {
  const notes = a.annotations || {};
  const since = a.since ? new Date(a.since * 1000).toLocaleString() : "";
  return h(
    "li",
    { class: `alert ${a.severity || "warning"} ${a.state}`, "data-rule": a.rule },
    h("strong", {}, a.rule),
    ` · ${a.deployment}${a.version ? ` v${a.version}` : ""} · ${a.severity} · ${a.state}`,
    since ? ` since ${since}` : "",
    a.value === null || a.value === undefined ? "" : ` · value ${+a.value.toPrecision(3)}`,
    notes.summary || notes.description ? h("div", { class: "muted" }, notes.summary || notes.description) : null,
  );
}

function recentlyResolved(alerts) {
  const resolved = alerts.filter((a) => a.state === "resolved");
  if (!resolved.length) return null;
  return h(
    "details",
    {},
    h("summary", {}, `${resolved.length} resolved in the last hour`),
    h("ul", { class: "alerts" }, resolved.map(alertItem)),
  );
}

// Models and their versions as a lineage tree: a version sits under the version it was made from.
export function modelsTree(models) {
  if (!models.length) return h("p", { class: "muted" }, "No models yet: conveyor models register NAME FILE");
  return h(
    "ul",
    { class: "models" },
    models.map(({ model, versions }) => {
      const children = new Map();
      for (const v of versions) {
        const parent = versions.some((p) => p.version === v.parent_version) ? v.parent_version : null;
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(v);
      }
      const branch = (parent) =>
        h(
          "ul",
          { class: "lineage" },
          (children.get(parent) || []).map((v) =>
            h(
              "li",
              { "data-version": `${model.name}:${v.version}` },
              h("span", { class: "version" }, `v${v.version}`),
              ` ${v.framework}`,
              v.aliases && v.aliases.length ? h("span", { class: "aliases" }, v.aliases.map((a) => h("span", { class: "alias" }, a))) : null,
              v.parent_version ? h("span", { class: "muted" }, ` from v${v.parent_version}`) : null,
              v.description ? h("div", { class: "muted" }, v.description) : null,
              children.has(v.version) ? branch(v.version) : null,
            ),
          ),
        );
      return h("li", {}, h("strong", {}, model.name), h("span", { class: "muted" }, ` ${model.version_count} version(s)`), branch(null));
    }),
  );
}

// A deployment's rollout as GET /deployments/{name}/rollout gives it: what moves from which version to
// which, the plan's steps with the current one marked (✓ behind; a manual gate says so), the traffic split, the
// last check's verdict and the events as a timeline (oldest first).
export function rolloutView(body) {
  const r = body.rollout;
  const state = body.state || {};
  const plan = body.plan || [];
  const done = r.phase === "promoted" ? plan.length : Math.min(r.step, plan.length);
  const current = Math.min(r.step, plan.length - 1);
  const head = h(
    "p",
    { class: "rollout-head" },
    h("strong", {}, `Rollout ${r.number}`),
    ` · ${r.strategy} · ${r.stableModel} → ${r.candidateModel} · `,
    h("span", { class: `phase ${r.phase}` }, r.phase.replace("_", " ")),
    r.reason && !r.active ? h("span", { class: "muted" }, ` · ${r.reason}`) : null,
    state.waitingFor ? h("span", { class: "muted" }, ` · waiting for ${state.waitingFor}`) : null,
  );
  const steps = h(
    "ol",
    { class: "steps" },
    plan.map((s, i) => {
      const where = i < done ? "done" : i === current && r.active ? "current" : "todo";
      return h(
        "li",
        { class: `step ${where}`, "data-step": i, title: s.passes > 1 ? `${s.passes} passing checks in a row` : null },
        where === "done" ? "✓ " : null,
        stepLabel(s),
        s.gate ? h("span", { class: "gate", title: "a manual gate: the rollout waits for conveyor rollout approve" }, " (gate)") : null,
      );
    }),
  );
  const verdict = body.lastVerdict;
  return h(
    "div",
    { class: "rollout", "data-rollout": r.number },
    head,
    steps,
    trafficBar(r, state),
    verdict ? h("p", { class: `verdict ${verdict.status}` }, `last check: ${verdict.summary || verdict.status}`) : null,
    table(
      ["time", "kind", "message"],
      (body.events || []).slice(-20).map((e) => h("tr", {}, h("td", { class: "nowrap" }, when(e.at)), h("td", {}, e.kind), h("td", {}, e.message))),
      "No events yet.",
    ),
  );
}

// What a step of the plan is, as rollout_plan.Step.describe says it.
function stepLabel(s) {
  if (s.kind === "shadow") return `shadow ${s.mirror}%`;
  if (s.kind === "preview") return "preview";
  if (s.kind === "abTest") return `A/B ${s.weight}% of users`;
  return `${s.weight}%`;
}

// Stable and candidate side by side, each as wide as the share of requests it answers.
function trafficBar(r, state) {
  const ended = !r.active;
  // No split is routed before the candidate has a ready replica (state.routed says whether it is).
  const starting = !ended && state.routed === false;
  let weight = Number(state.weight ?? r.weight) || 0;
  if (ended || starting) weight = r.phase === "promoted" ? 100 : 0;
  const mirror = ended || starting ? 0 : Number(state.mirror) || 0;
  const unit = r.strategy === "abTest" ? "% of users" : "%";
  const note = mirror ? ` · ${mirror}% mirrored to ${r.candidateModel} (its answers never reach callers)` : "";
  // Widths through the CSSOM: the page's CSP (style-src 'self') refuses style attributes.
  const stable = h("span", { class: "stable" });
  const candidate = h("span", { class: "candidate" });
  stable.style.width = `${100 - weight}%`;
  candidate.style.width = `${weight}%`;
  return h(
    "div",
    { class: "traffic" },
    h("div", { class: "split", role: "img", "aria-label": `stable ${100 - weight}%, candidate ${weight}%` }, stable, candidate),
    h("span", { class: "muted" }, `${r.stableModel} ${100 - weight}${unit} · ${r.candidateModel} ${weight}${unit}${note}`),
  );
}
