// PEFT LoRA adapters: a defensive safetensors reader, the adapter loader, and stacking into kernel banks.
export {
  readSafetensors, parseSafetensors, tensorF32, tensorAsF32, tensorBits16, SAFETENSORS_DTYPE_SIZES, MAX_HEADER_BYTES,
} from './safetensors';
export type { SafetensorsDtype, SafetensorsTensor, SafetensorsFile, SafetensorsOptions } from './safetensors';
export {
  loadPeftAdapter, parsePeftConfig, patternKey, patternValue, loraScale, ADAPTER_CONFIG, ADAPTER_WEIGHTS,
} from './peft';
export type { PeftAdapter, PeftModule, PeftLoraConfig, LoadPeftOptions, LlamaTargetModule } from './peft';
export { encodeSafetensors, writeSafetensors } from './safetensors_write';
export type { TensorToWrite } from './safetensors_write';
export { buildLoraBank, buildAdapterBank, AdapterBank } from './bank';
export type { AdapterBankTarget, BankBuildOptions } from './bank';
export { readJsonFile } from './json_file';
