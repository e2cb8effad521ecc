/**
 * The bearer token: in this tab's sessionStorage only (gone when the tab closes, never sent by the
 * browser on its own), never in localStorage, a cookie or the URL. Signing out removes it.
 */
const KEY = "deployer.token";

export function savedToken(): string | undefined {
  try {
    return sessionStorage.getItem(KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

export function saveToken(token: string): void {
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    // storage refused (private mode): the token stays in memory for this page only
  }
}

export function forgetToken(): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}
