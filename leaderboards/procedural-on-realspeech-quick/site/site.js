// Sorting and filtering for the leaderboard's tables: no library, no network.
// Hand-written because it is ~80 lines and a bundled table library would weigh more
// than the whole page's data; the tables read fine without it.
"use strict";
(function () {
  // A cell sorts by its data-sort attribute (raw numbers), else by its text.
  function key(cell) {
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    if (raw === "" || raw === "—") return { empty: true };
    const number = Number(raw);
    return Number.isFinite(number) ? { number: number } : { text: raw };
  }

  function compare(a, b) {
    if (a.empty || b.empty) return (a.empty ? 1 : 0) - (b.empty ? 1 : 0);
    if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
    if (a.number !== undefined) return -1;
    if (b.number !== undefined) return 1;
    return a.text.localeCompare(b.text, undefined, { numeric: true });
  }

  function sortBy(table, column, header) {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map(function (row, index) {
      return { row: row, key: key(row.cells[column]), index: index };
    });
    rows.sort(function (x, y) {
      // Empty cells stay last in both directions; ties keep their order.
      if (x.key.empty || y.key.empty) return compare(x.key, y.key) || x.index - y.index;
      return (ascending ? 1 : -1) * compare(x.key, y.key) || x.index - y.index;
    });
    for (const item of rows) body.appendChild(item.row);
  }

  for (const table of document.querySelectorAll("table.sortable")) {
    Array.from(table.tHead.rows[0].cells).forEach(function (header, column) {
      header.tabIndex = 0;
      header.title = "sort by " + header.textContent;
      header.addEventListener("click", function () { sortBy(table, column, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, column, header);
        }
      });
    });
  }

  for (const bar of document.querySelectorAll("[data-filters-for]")) {
    const table = document.getElementById(bar.dataset.filtersFor);
    const selects = Array.from(bar.querySelectorAll("select"));
    const search = bar.querySelector("input");
    const count = bar.querySelector(".count");
    const apply = function () {
      const needle = search.value.trim().toLowerCase();
      let shown = 0;
      const rows = table.tBodies[0].rows;
      for (const row of rows) {
        const keep = selects.every(function (select) {
          return select.value === "" ||
            row.cells[Number(select.dataset.column)].textContent.trim() === select.value;
        }) && (needle === "" || row.textContent.toLowerCase().includes(needle));
        row.hidden = !keep;
        if (keep) shown += 1;
      }
      count.textContent = shown + " of " + rows.length + " rows";
    };
    for (const control of [...selects, search]) control.addEventListener("input", apply);
    apply();
  }
})();
