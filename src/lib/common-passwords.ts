// The common-password list of zxcvbn-ts (@zxcvbn-ts/language-common, MIT licence), about 49,000
// of the most used passwords of published breach corpora, most frequent first: far more than the
// 10,000 most common that OWASP ASVS 6.2.4 asks to refuse. Compared case-insensitively.
import { dictionary } from "@zxcvbn-ts/language-common";

let list: Set<string> | undefined;

export function commonPasswordCount(): number {
  list ??= new Set(dictionary["passwords-common"].map((p) => p.toLowerCase()));
  return list.size;
}

export function isCommonPassword(password: string): boolean {
  list ??= new Set(dictionary["passwords-common"].map((p) => p.toLowerCase()));
  return list.has(password.toLowerCase());
}
