// The dashboard: polls the management API every 2 s and redraws. Deployments and their health, one
// deployment's charts (from GET /deployments/{name}/series, fetched whole once and then only what is new),
// its rollout while one runs, replicas, drift and events; alerts; models with their lineage.

import { AuthError, Missing, forgetToken, get, hasToken, setToken, takeTokenFromFragment } from "./api.js";
import { lineChart } from "./chart.js";
import { alertsList, deploymentFacts, deploymentsList, driftTable, eventsList, modelsTree, rolloutView } from "./views.js";

const SPAN_S = 600;
const STEP_S = 2;
const REFRESH_MS = 2000;
const MODELS_EVERY_MS = 15000;
const NO_ALERTS_RECHECK_MS = 60000;
const state = { selected: null, series: null, seriesOf: null, rollout: null, modelsAt: 0, noAlertsUntil: 0, timer: null, run: 0 };
const $ = (id) => document.getElementById(id);

function setStatus(kind, text) {
  const el = $("status");
  el.className = `status ${kind}`;
  el.textContent = text;
}

function showLogin(message) {
  clearTimeout(state.timer);
  $("app").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-message").textContent = message;
  setStatus("idle", "signed out");
  $("token").focus();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("forget").hidden = false;
}

// Append the points of `fresh` newer than what `old` holds; drop those older than the span.
export function merge(old, fresh) {
  if (!old || old.now === null || fresh.now === null || fresh.now < old.now) return fresh;
  const last = old.t.length ? old.t[old.t.length - 1] : -Infinity;
  const width = old.t.length;
  const take = [];
  fresh.t.forEach((t, i) => {
    const prev = take.length ? fresh.t[take[take.length - 1]] : last;
    if (t >= prev + STEP_S * 0.999) take.push(i);
  });
  for (const version of new Set([...Object.keys(old.versions), ...Object.keys(fresh.versions)])) {
    const target = (old.versions[version] ||= { rate: [], error_ratio: [], p50: [], p99: [] });
    for (const [key, column] of Object.entries(target)) {
      while (column.length < width) column.unshift(null);
      const source = fresh.versions[version] ? fresh.versions[version][key] : null;
      for (const i of take) column.push(source ? source[i] : null);
    }
  }
  old.t.push(...take.map((i) => fresh.t[i]));
  const drop = old.t.findIndex((t) => fresh.now - t <= SPAN_S);
  const cut = drop < 0 ? old.t.length : drop;
  old.t.splice(0, cut);
  for (const columns of Object.values(old.versions)) for (const column of Object.values(columns)) column.splice(0, cut);
  old.now = fresh.now;
  return old;
}

function ms(seconds) {
  if (seconds === 0) return "0";
  return seconds < 1 ? `${+(seconds * 1000).toPrecision(3)} ms` : `${+seconds.toPrecision(3)} s`;
}

function drawCharts(series) {
  const versions = Object.keys(series.versions);
  // The time the history covers, in whole minutes from 2 to 10: a young stack's lines fill the chart.
  const covered = series.t.length ? series.now - series.t[0] : 0;
  const spanS = Math.min(SPAN_S, Math.max(120, Math.ceil(covered / 60) * 60));
  const chart = (id, key, format, scale = 1) =>
    lineChart($(id), {
      t: series.t,
      now: series.now ?? 0,
      spanS,
      format,
      series: versions.map((v) => ({
        name: v,
        values: series.versions[v][key].map((x) => (x === null ? null : x * scale)),
      })),
    });
  chart("chart-rate", "rate", (v) => `${+v.toPrecision(3)}`);
  chart("chart-errors", "error_ratio", (v) => `${+v.toPrecision(3)}%`, 100);
  chart("chart-p50", "p50", ms);
  chart("chart-p99", "p99", ms);
}

async function refreshDeployment() {
  const name = state.selected;
  $("detail-title").textContent = name ? `Deployment ${name}` : "No deployment selected";
  if (!name) return;
  const fresh = state.seriesOf !== name || !state.series;
  const since = fresh ? SPAN_S : 10 * STEP_S;
  const path = `/deployments/${encodeURIComponent(name)}`;
  const [detail, series, drift] = await Promise.all([
    get(path),
    get(`${path}/series?since=${since}&step=${STEP_S}`),
    get(`${path}/drift`).catch((err) => (err instanceof Missing ? null : Promise.reject(err))),
  ]);
  if (state.selected !== name) return; // the user picked another one meanwhile
  state.series = fresh ? series : merge(state.series, series);
  state.seriesOf = name;
  const { facts, replicas } = deploymentFacts(detail);
  $("facts").replaceChildren(...facts.filter(Boolean));
  $("replicas").replaceChildren(replicas);
  $("events").replaceChildren(eventsList(detail.events));
  $("drift").replaceChildren(driftTable(drift));
  await refreshRollout(name, detail);
  drawCharts(state.series);
}

// The rollout panel: fetched while the deployment's status names an active rollout (its "rollout"), and
// once more when it ends, so its outcome and timeline stay on the page until another deployment is picked.
async function refreshRollout(name, detail) {
  const shown = state.rollout && state.rollout.rollout.deployment === name ? state.rollout : null;
  let body = shown;
  if (detail.rollout || (shown && shown.rollout.active)) {
    body = await get(`/deployments/${encodeURIComponent(name)}/rollout`).catch((err) =>
      err instanceof Missing ? null : Promise.reject(err),
    );
  }
  if (state.selected !== name) return;
  state.rollout = body;
  $("rollout-section").hidden = !body;
  $("rollout").replaceChildren(...(body ? [rolloutView(body)] : []));
}

async function refreshAlerts() {
  if (state.noAlertsUntil > Date.now()) return;
  let alerts = null;
  try {
    const body = await get("/alerts");
    alerts = Array.isArray(body) ? body : body.alerts || [];
  } catch (err) {
    if (!(err instanceof Missing)) throw err;
    state.noAlertsUntil = Date.now() + NO_ALERTS_RECHECK_MS; // no alerts route here: say so calmly
  }
  $("alerts").replaceChildren(alertsList(alerts));
}

async function refreshModels() {
  if (Date.now() - state.modelsAt < MODELS_EVERY_MS) return;
  const { models } = await get("/models");
  const detailed = await Promise.all(models.map((m) => get(`/models/${encodeURIComponent(m.name)}`)));
  $("models").replaceChildren(modelsTree(detailed));
  state.modelsAt = Date.now();
}

function select(name) {
  state.selected = name;
  history.replaceState(null, "", `#deployment=${encodeURIComponent(name)}`);
  tick();
}

// One refresh, then the next in REFRESH_MS; a newer call (a click) supersedes a refresh in flight.
async function tick() {
  clearTimeout(state.timer);
  const run = (state.run += 1);
  try {
    const { deployments } = await get("/deployments");
    if (!deployments.some((d) => d.name === state.selected)) state.selected = deployments[0]?.name ?? null;
    $("deployments").replaceChildren(deploymentsList(deployments, state.selected, select));
    await Promise.all([refreshDeployment(), refreshAlerts(), refreshModels()]);
    if (run !== state.run) return;
    showApp();
    setStatus("live", `live · updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (run !== state.run) return;
    if (err instanceof AuthError) {
      showLogin(`The control plane refused the token (${err.message}). Paste a valid one.`);
      return;
    }
    setStatus("error", `cannot refresh: ${err.message}`);
  }
  state.timer = setTimeout(tick, REFRESH_MS);
}

function start() {
  takeTokenFromFragment();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("deployment");
  if (wanted) state.selected = wanted;
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token").value);
    $("token").value = "";
    state.modelsAt = 0;
    tick();
  });
  $("forget").addEventListener("click", () => {
    forgetToken();
    showLogin("Token forgotten. Paste a token to open the dashboard again.");
  });
  window.addEventListener("hashchange", () => {
    // A #token=... pasted into this tab's address bar: take it, as at the first load.
    if (!new URLSearchParams(location.hash.slice(1)).has("token")) return;
    takeTokenFromFragment();
    state.modelsAt = 0;
    tick();
  });
  if (!hasToken()) {
    showLogin("This dashboard needs a Conveyor token (viewer role or higher).");
    return;
  }
  tick();
}

start();
