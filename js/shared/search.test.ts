import assert from "node:assert/strict";
import { test } from "node:test";
import { searchToken } from "./search";

test("searchToken reads ␣ as a space, as the box's placeholder says", () => {
  assert.equal(searchToken("␣Paris"), " Paris");
  assert.equal(searchToken("␣␣x␣"), "  x ");
  assert.equal(searchToken(" Paris"), " Paris"); // a typed space stays
  assert.equal(searchToken("大型"), "大型");
  assert.equal(searchToken(""), ""); // nothing to search for
});
