// router.json of a router folder:
//   { "experts": [names in logit order], "topK": 2, "renormalize": true,
//     "input": "last_user" | "conversation", "maxLength": 128 }
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface RouterConfig {
  experts: string[];
  topK: number;
  renormalize: boolean;
  input: 'last_user' | 'conversation';
  maxLength: number;
}

export function readRouterConfig(dir: string): RouterConfig {
  const file = path.join(dir, 'router.json');
  if (!fs.existsSync(file)) throw new Error(`The router folder ${dir} has no router.json`);
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  const bad = (field: string, what: string) => new Error(`${file}: expected ${what} for ${field} but received ${JSON.stringify(raw[field])}`);
  const experts = raw.experts;
  if (!Array.isArray(experts) || experts.length === 0 || !experts.every((e) => typeof e === 'string')) throw bad('experts', 'a non-empty list of expert names');
  const topK = raw.topK ?? 2;
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 1 || topK > experts.length) throw bad('topK', `an integer between 1 and ${experts.length}`);
  const renormalize = raw.renormalize ?? true;
  if (typeof renormalize !== 'boolean') throw bad('renormalize', 'true or false');
  const input = raw.input ?? 'last_user';
  if (input !== 'last_user' && input !== 'conversation') throw bad('input', "'last_user' or 'conversation'");
  const maxLength = raw.maxLength ?? 128;
  if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < 1) throw bad('maxLength', 'a positive integer');
  return { experts: experts as string[], topK, renormalize, input, maxLength };
}
