// One home for each shared thing: a view folder (js/<view>/) imports from js/shared/ and from itself,
// never from another view's folder (DESIGN, "The front-end scaffold").
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

test("no view folder imports another view's code or sheet", () => {
  const borrowed: string[] = [];
  for (const dir of readdirSync("js", { withFileTypes: true })) {
    if (!dir.isDirectory() || dir.name === "shared") continue;
    for (const file of readdirSync(join("js", dir.name))) {
      if (!file.endsWith(".ts")) continue;
      const source = readFileSync(join("js", dir.name, file), "utf8");
      for (const [, spec] of source.matchAll(/(?:from|import)\s+"(\.\.\/[^"]*)"/g)) {
        if (!spec!.startsWith("../shared/")) borrowed.push(`js/${dir.name}/${file} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(borrowed, []);
});
