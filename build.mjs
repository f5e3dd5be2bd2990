// Bundles each view (js/<view>/index.ts) into one self-contained ES module under
// llmasos_widgets/static/<view>.js, which anywidget loads as the view's _esm, and its CSS (the
// style.css files it imports, js/shared/base.css included) into static/<view>.css, the view's _css.
// static/manifest.json lists the bundles: the Python build checks it exists, the tests read it.
//
//   node build.mjs            production bundles (minified), checked to import nothing
//   node build.mjs --watch    rebuild on change, inline source maps
//   node build.mjs --tests    also bundle js/**/*.test.ts into build/tests/ for `node --test`
import * as esbuild from "esbuild";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const watch = process.argv.includes("--watch");
const tests = process.argv.includes("--tests");
const outdir = "llmasos_widgets/static";

/** Views are the folders of js/ that hold an index.ts; js/shared is library code. */
function viewEntries() {
  const entries = {};
  for (const dir of readdirSync("js", { withFileTypes: true })) {
    if (!dir.isDirectory() || dir.name === "shared") continue;
    const index = join("js", dir.name, "index.ts");
    if (existsSync(index)) entries[dir.name] = index;
  }
  return entries;
}

function testEntries(dir = "js", found = []) {
  for (const item of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, item.name);
    if (item.isDirectory()) testEntries(path, found);
    else if (item.name.endsWith(".test.ts")) found.push(path);
  }
  return found;
}

/**
 * The module "lw:views" that the Explorer imports: every view folder's default export by name, so a new
 * view becomes an Explorer panel with no edit here or in js/explorer/ (its Python class registers it).
 */
const viewsModule = {
  name: "lw-views",
  setup(build) {
    build.onResolve({ filter: /^lw:views$/ }, () => ({ path: "lw:views", namespace: "lw-views" }));
    build.onLoad({ filter: /.*/, namespace: "lw-views" }, () => {
      const names = Object.keys(viewEntries()).filter((n) => n !== "explorer" && n !== "standalone").sort();
      const lines = names.map((n, i) => `import v${i} from ${JSON.stringify(`./js/${n}/index.ts`)};`);
      lines.push(`export default { ${names.map((n, i) => `${JSON.stringify(n)}: v${i}`).join(", ")} };`);
      return { contents: lines.join("\n"), resolveDir: process.cwd(), loader: "ts" };
    });
  },
};

/** A view must load with no import map and no network: fail the build on any import left. */
function checkSelfContained(metafile) {
  const bad = [];
  for (const [file, output] of Object.entries(metafile.outputs)) {
    for (const imp of output.imports) bad.push(`${file} imports ${imp.path}`);
  }
  if (bad.length) throw new Error(`bundles are not self-contained:\n  ${bad.join("\n  ")}`);
}

const entryPoints = viewEntries();
if (Object.keys(entryPoints).length === 0) throw new Error("no view found (js/<view>/index.ts)");

/** @type {import("esbuild").BuildOptions} */
const viewOptions = {
  entryPoints,
  outdir,
  bundle: true,
  format: "esm",
  target: "es2020",
  platform: "browser",
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  metafile: true,
  logLevel: "info",
  plugins: [viewsModule],
};

if (watch) {
  const ctx = await esbuild.context(viewOptions);
  await ctx.watch();
  console.log(`watching js/ → ${outdir}/ (${Object.keys(entryPoints).join(", ")})`);
} else {
  rmSync(outdir, { recursive: true, force: true });
  const result = await esbuild.build(viewOptions);
  checkSelfContained(result.metafile);
  const views = Object.keys(entryPoints).sort();
  writeFileSync(join(outdir, "manifest.json"), JSON.stringify({ views }, null, 1) + "\n");
}

if (tests) {
  const testdir = "build/tests";
  rmSync(testdir, { recursive: true, force: true });
  const files = testEntries();
  await esbuild.build({
    entryPoints: files,
    outdir: testdir,
    outbase: "js",
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    target: "node20",
    platform: "node",
    packages: "external",
    plugins: [viewsModule],
    sourcemap: "inline",
    logLevel: "warning",
  });
  console.log(`bundled ${files.length} test file(s) into ${testdir}/: ${files.map((f) => relative("js", f)).join(", ")}`);
}
