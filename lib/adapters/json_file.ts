// A JSON file as a value, with the file named in the error when it is not JSON (adapter configs,
// model side files, router configs all read through here).
import * as fs from 'node:fs';
import { rangeError } from '../errors';

export function readJsonFile(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw rangeError(file, 'valid JSON', `text that is not JSON (${(err as Error).message})`);
  }
}
