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
  // The request's expiry counts down each second. Only for the eye: the poll's answer decides
  // (the page reloads when the request is over, expired included). It is not in the status
  // paragraph, so a screen reader does not read out every second.
  var expiry = document.getElementById('push-expiry');
  var countdown;
  if (expiry) {
    var deadline = Date.now() + Number(expiry.getAttribute('data-expires-in')) * 1000;
    // A call's page says "The call ends in …"; a notification's, "The request expires in …".
    var prefix = expiry.getAttribute('data-prefix') || 'The request expires in ';
    var over = expiry.getAttribute('data-over') || 'The request has expired.';
    countdown = setInterval(function () {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      if (left > 0) {
        expiry.textContent = prefix + left + (left === 1 ? ' second.' : ' seconds.');
      } else {
        expiry.textContent = over;
        clearInterval(countdown);
      }
    }, 1000);
  }
  function poll() {
    if (leaving) return;
    fetch('/login/push/status', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (leaving) return;
        if (s.state === 'approved') {
          leaving = true;
          clearInterval(countdown);
          if (expiry) expiry.textContent = '';
          status.textContent = 'Approved. Signing you in…';
          form.submit();
          return;
        }
        if (s.state === 'pending') { poll(); return; }
        // Over: the reloaded page says why and what to do; until then, this line does.
        clearInterval(countdown);
        if (s.message) status.textContent = s.message;
        window.location.reload();
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
