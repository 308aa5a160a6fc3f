// Text <-> token ids for one model: its tokenizer.json (@huggingface/tokenizers), its chat
// template (tokenizer_config.json `chat_template`, or chat_template.jinja as transformers 5
// writes it, rendered with @huggingface/jinja), and the ids that end a generation.
//   eos ids = generation_config.eos_token_id ∪ config.eos_token_id ∪ id(tokenizer_config.eos_token)
import * as fs from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { findFile, idList, Json, readJson, tokenString } from './model_files';

export interface ChatMessage {
  role: string;
  content: string;
}

export class TextCodec {
  readonly eosIds: number[];
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly maxContext: number | undefined;
  /** generation_config.json as found ({} when absent): the model's sampling defaults */
  readonly generationConfig: Json;
  readonly #tokenizer: Tokenizer;
  readonly #template: Template | undefined;
  readonly #special: Json;

  constructor(dirs: readonly string[]) {
    const tokFile = findFile(dirs, 'tokenizer.json');
    if (!tokFile) throw new Error(`No tokenizer.json in ${dirs.join(' or ')}`);
    const tokConfig = readJson(findFile(dirs, 'tokenizer_config.json'));
    const config = readJson(findFile(dirs, 'config.json'));
    this.generationConfig = readJson(findFile(dirs, 'generation_config.json'));
    this.#tokenizer = new Tokenizer(readJson(tokFile), tokConfig);
    this.#special = tokConfig;
    this.bosToken = tokenString(tokConfig.bos_token);
    this.eosToken = tokenString(tokConfig.eos_token);
    const eos = new Set([...idList(this.generationConfig.eos_token_id), ...idList(config.eos_token_id)]);
    const eosFromToken = this.eosToken !== undefined ? this.#tokenizer.token_to_id(this.eosToken) : undefined;
    if (eosFromToken !== undefined) eos.add(eosFromToken);
    this.eosIds = [...eos];
    const maxPos = config.max_position_embeddings;
    this.maxContext = typeof maxPos === 'number' ? maxPos : undefined;
    const jinja = findFile(dirs, 'chat_template.jinja');
    const source = jinja ? fs.readFileSync(jinja, 'utf8') : templateSource(tokConfig.chat_template);
    this.#template = source !== undefined ? new Template(source) : undefined;
  }

  get hasChatTemplate(): boolean {
    return this.#template !== undefined;
  }

  /** Raw text as the model's tokenizer encodes it (with its own BOS, if its post-processor adds one). */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.#tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.#tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  /** The chat template rendered with the generation prompt added. */
  renderChat(messages: readonly ChatMessage[]): string {
    if (!this.#template) throw new Error('This model has no chat template (tokenizer_config.json chat_template or chat_template.jinja); pass prompt or inputIds instead');
    return this.#template.render({
      ...specialStrings(this.#special),
      messages,
      add_generation_prompt: true,
    });
  }

  /** Token ids of a chat: the template already writes any BOS, so the tokenizer adds none. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    return this.encode(this.renderChat(messages), false);
  }
}

/** `chat_template` is a string, or a list of named templates of which `default` is the chat one. */
function templateSource(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as { name?: string; template?: string }[];
    return (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

/** bos_token, eos_token, ... as plain strings for the template. */
function specialStrings(cfg: Json): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token']) {
    const s = tokenString(cfg[key]);
    if (s !== undefined) out[key] = s;
  }
  return out;
}
