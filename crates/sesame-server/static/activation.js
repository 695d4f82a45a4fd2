(function () {
  var el = document.getElementById('activation-status');
  if (!el) return;
  function poll() {
    fetch('/security-info/add/app/status?id=' + encodeURIComponent(el.dataset.id), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.done) { el.textContent = 'Your app is ready: ' + s.device + ' was added.'; return; }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
