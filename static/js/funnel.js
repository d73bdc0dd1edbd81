// Charts of the funnel dashboard (Chart.js, vendored). The data comes from json_script
// blocks next to each canvas; htmx.onLoad draws the charts of the first page and of every
// swapped result, so a filter change redraws them without a page load.
(function () {
  "use strict";
  var COLORS = ["#108548", "#1f75cb", "#c17d10", "#9e3dad", "#d4394b", "#666666"];
  var charts = {};

  function config(kind, data) {
    if (kind === "funnel") {
      return {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: [{ label: data.label, data: data.data, backgroundColor: COLORS[0] }],
        },
        options: {
          indexAxis: "y",
          animation: false,
          maintainAspectRatio: false,
          plugins: { legend: { display: false } },
          scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
        },
      };
    }
    return {
      type: "line",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (series, i) {
          return {
            label: series.label,
            data: series.data,
            borderColor: COLORS[i % COLORS.length],
            backgroundColor: COLORS[i % COLORS.length],
            tension: 0,
            pointRadius: data.labels.length > 60 ? 0 : 2,
          };
        }),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    };
  }

  function draw(root) {
    if (typeof Chart === "undefined") return;
    var canvases = root.querySelectorAll ? root.querySelectorAll("canvas[data-chart]") : [];
    Array.prototype.forEach.call(canvases, function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      // The swapped-out canvas is gone; free its chart before drawing the new one.
      if (charts[canvas.id]) charts[canvas.id].destroy();
      charts[canvas.id] = new Chart(canvas, config(canvas.dataset.kind, JSON.parse(source.textContent)));
    });
  }

  htmx.onLoad(draw);
})();
