const usage = `Usage: pagoda-bench <command> [options]

Commands (see the benchmark issue for their state):
  serve       load-test an OpenAI-compatible server (vllm bench serve)
  throughput  offline throughput through the LLM class
  latency     single-batch latency
  sweep       serve over a list of request rates or concurrencies, with a chart`;

const [command] = process.argv.slice(2);
if (command === undefined || command === '--help' || command === '-h') {
  console.log(usage);
} else {
  console.error(`pagoda-bench: "${command}" is not implemented yet in this build\n\n${usage}`);
  process.exit(2);
}
