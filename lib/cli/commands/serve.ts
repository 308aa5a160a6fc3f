// personafuse serve: the OpenAI-compatible HTTP server (loopback by default). Generation runs in
// a worker thread so the server keeps answering while the batch decodes.
import { Command } from 'commander';
import { startServer } from '../../server/server';
import { addModelFlags, addPersonaFlags, loraLayoutOption, ModelFlags, numberFlag, parsePersona, loadModelFromFlags } from '../options';
import * as path from 'node:path';

export function serveCommand(): Command {
  return addPersonaFlags(addModelFlags(new Command('serve').description('OpenAI-compatible server: POST /v1/chat/completions, GET /v1/models')))
    .addOption(loraLayoutOption())
    .option('--port <n>', 'port (0 = any free one)', numberFlag('--port'), 8000)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--model-id <id>', 'the model name /v1/models reports (default: the model folder name)')
    .option('--max-batch <n>', 'most requests decoded together', numberFlag('--max-batch'))
    .action(async (flags: ModelFlags & { port: number; host: string; modelId?: string; maxBatch?: number }) => {
      const model = await loadModelFromFlags(flags, { worker: true, maxBatch: flags.maxBatch });
      const modelId = flags.modelId ?? path.basename(model.modelFile.endsWith('.onnx') ? path.dirname(model.modelFile) : model.modelFile);
      const srv = await startServer(model, { port: flags.port, host: flags.host, modelId, defaultPersona: parsePersona(flags.persona) });
      const info = { url: srv.url, host: flags.host, port: srv.port, model: modelId, experts: model.experts, router: !!model.router };
      process.stdout.write(flags.json ? `${JSON.stringify(info)}\n`
        : `personafuse serving ${modelId} (${model.experts.length} experts${model.router ? ', router' : ''}) on ${srv.url}/v1\n`);
      const stop = async () => {
        await srv.close();
        await model.dispose();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
    });
}
