// The console's login (docs/console.md): when the admin API answers 401, the views are hidden
// and a form asks for a user and password; it posts /api/login (the broker sets an HttpOnly
// session cookie), then the console loads as usual. The header shows the user and a "Log out"
// button. `body[data-login]` says which of the two is shown: "required" or "done".

import * as api from './api.js';

let onLoggedIn = () => {};

function showViews(show) {
  document.querySelector('main').hidden = !show;
  document.getElementById('tabs').hidden = !show;
  document.getElementById('login').hidden = show;
}

/** Hides the views and shows the login form, with why (the API's 401 message). */
export function show(reason) {
  if (document.body.dataset.login === 'required') return;
  document.body.dataset.login = 'required';
  showViews(false);
  document.getElementById('login-reason').textContent = reason || '';
  document.getElementById('whoami').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('poll-status').textContent = 'logged out';
  document.querySelector('#login-form [name=user]').focus();
}

/** Shows who this session is (and the log-out button while security is on). */
export async function refreshUser() {
  try {
    const me = await api.whoami();
    const who = document.getElementById('whoami');
    who.textContent = me.user ? me.user : 'anonymous';
    who.hidden = !me.security && !me.user;
    document.getElementById('logout').hidden = !me.user;
  } catch (e) {
    if (e.status === 401) show(e.message);
  }
}

async function submit(form) {
  const error = document.getElementById('login-error');
  error.hidden = true;
  try {
    await api.login(form.elements.user.value.trim(), form.elements.password.value);
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    return;
  }
  form.elements.password.value = '';
  document.body.dataset.login = 'done';
  showViews(true);
  await refreshUser();
  onLoggedIn();
}

async function logout() {
  try {
    await api.logout();
  } finally {
    show('You logged out.');
  }
}

/** Wires the form and the log-out button; `loggedIn` runs after each login. */
export function init(loggedIn) {
  onLoggedIn = loggedIn;
  document.getElementById('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    submit(e.target);
  });
  document.getElementById('logout').addEventListener('click', logout);
}
