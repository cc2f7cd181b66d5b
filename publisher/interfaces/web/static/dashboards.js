// media-matrix dashboards: the publishing calendar (EventCalendar) and the engagement chart (ECharts).
// Rescheduling is a call to the API's own POST /posts/{id}/schedule with the session's CSRF secret (app.js call()).
"use strict";

function pad2(n) { return String(n).padStart(2, "0"); }

// A Date as the server's local wall clock "YYYY-MM-DD HH:MM" (the calendar shows the server's zone's times).
function wallClock(d) {
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function setupCalendar(el) {
  const filters = document.getElementById("calendar-filters");
  const params = () => {
    const out = {};
    for (const [k, v] of new FormData(filters)) if (v) out[k] = v;
    return out;
  };
  const calendar = EventCalendar.create(el, {
    view: "timeGridWeek",
    firstDay: 1,
    scrollTime: "08:00:00",
    locale: el.dataset.lang === "en" ? "en" : "zh-CN",
    headerToolbar: { start: "prev,next today", center: "title", end: "dayGridMonth,timeGridWeek" },
    buttonText: { today: el.dataset.today, dayGridMonth: el.dataset.month, timeGridWeek: el.dataset.week },
    editable: false,
    eventStartEditable: false,
    eventDurationEditable: false,
    eventSources: [{ url: "/ui/calendar/events", extraParams: params }],
    eventClick: (info) => { window.location.assign(`/ui/posts/${info.event.extendedProps.post_id}`); },
    eventDrop: async (info) => {
      const props = info.event.extendedProps;
      if (props.kind !== "scheduled" || !window.confirm(el.dataset.confirm)) { info.revert(); return; }
      const data = await call("POST", `/posts/${props.post_id}/schedule`, { at: wallClock(info.event.start) });
      if (data === null) info.revert();
      calendar.refetchEvents();
    },
  });
  filters.addEventListener("change", () => calendar.refetchEvents());
}

function setupChart(el) {
  const data = JSON.parse(document.getElementById("engagement-data").textContent);
  const chart = echarts.init(el);
  chart.setOption({
    tooltip: { trigger: "axis" },
    legend: { top: 0, data: data.metrics.map((m) => data.names[m]) },
    grid: { left: 60, right: 20, top: 40, bottom: 30 },
    xAxis: { type: "category", data: data.series.map((d) => d.day) },
    yAxis: { type: "value" },
    series: data.metrics.map((m) => ({ name: data.names[m], type: "line", data: data.series.map((d) => d[m]) })),
  });
  window.addEventListener("resize", () => chart.resize());
}

// The needs radar: one line per need over the days (the table below it holds the same numbers).
function setupNeeds(el) {
  const data = JSON.parse(document.getElementById("needs-data").textContent);
  const chart = echarts.init(el);
  chart.setOption({
    tooltip: { trigger: "axis" },
    legend: { top: 0, data: data.needs.map((n) => n.label) },
    grid: { left: 40, right: 20, top: 60, bottom: 30 },
    xAxis: { type: "category", data: data.days },
    yAxis: { type: "value", minInterval: 1 },
    series: data.needs.map((n) => ({ name: n.label, type: "line", data: n.counts })),
  });
  window.addEventListener("resize", () => chart.resize());
}

document.addEventListener("DOMContentLoaded", () => {
  const needs = document.getElementById("needs-chart");
  if (needs && window.echarts) setupNeeds(needs);
  const calendar = document.getElementById("calendar");
  if (calendar && window.EventCalendar) setupCalendar(calendar);
  const chart = document.getElementById("engagement-chart");
  if (chart && window.echarts) setupChart(chart);
});
