// The driver of the child-process scripts that dispose a model mid-work: runs round(0..n-1) one
// after another, prints their results as one JSON line and exits 0, or prints the error and exits 2
// (a native abort ends the process with a signal instead, which is what the tests look for).
module.exports = function runRounds(rounds, round) {
  (async () => {
    const out = [];
    for (let i = 0; i < rounds; i++) out.push(await round(i));
    process.stdout.write(`${JSON.stringify(out)}\n`);
  })().catch((err) => {
    process.stderr.write(`${err && err.stack}\n`);
    process.exit(2);
  });
};
