(function () {
  var status = document.getElementById('push-status');
  var form = document.getElementById('push-complete');
  if (!status || !form) return;
  // Once the user submits a form here ("Use your password instead", "Send another request"),
  // the page is leaving: a poll answer arriving now (the server just withdrew the request)
  // must not reload the page, which would abort that submission and lose the cookie its
  // response sets (the remembered choice).
  var leaving = false;
  document.addEventListener('submit', function () { leaving = true; }, true);
  window.addEventListener('pagehide', function () { leaving = true; });
  function poll() {
    if (leaving) return;
    fetch('/login/push/status', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (leaving) return;
        if (s.state === 'approved') { leaving = true; status.textContent = 'Approved. Signing you in…'; form.submit(); return; }
        if (s.state === 'pending') { poll(); return; }
        window.location.reload();
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
