import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkOriginNames, defaultStreamName, OriginListError, parseOriginEntry, parseOriginList } from "./index.js";

describe("origin list", () => {
  it("names a stream after the URL path's last segment, percent-decoded, unless a name is given", () => {
    assert.equal(defaultStreamName("https://cdn.example/v/intro%20cut.mp4?sig=1"), "intro cut.mp4");
    assert.deepEqual(parseOriginEntry("https://cdn.example/v/a.mp4", "--origin"), {
      url: "https://cdn.example/v/a.mp4",
      name: "a.mp4",
      where: "--origin",
    });
    assert.equal(parseOriginEntry("http://cdn.example/v/a.mp4   movies/a.mp4", "x").name, "movies/a.mp4");
  });

  it("parses one URL [NAME] a line, skipping blank lines and # comments", () => {
    const text = [
      "# origins of the spring programme",
      "",
      "https://cdn.example/v/one.mp4",
      "  https://cdn.example/v/two.mp4 shows/two.mp4   # the second one",
      "http://10.0.0.5:8080/raw/three.bin",
    ].join("\n");
    const specs = parseOriginList(text, "origins.txt");
    assert.deepEqual(
      specs.map((s) => [s.name, s.where]),
      [
        ["one.mp4", "origins.txt:3"],
        ["shows/two.mp4", "origins.txt:4"],
        ["three.bin", "origins.txt:5"],
      ],
    );
  });

  it("names the file and line of a bad entry", () => {
    const cases: Array<[string, RegExp]> = [
      [
        "ftp://cdn.example/a.mp4",
        /^origins\.txt:2: origin URL "ftp:\/\/cdn\.example\/a\.mp4" must use http:\/\/ or https:\/\//,
      ],
      ["not a url at all", /^origins\.txt:2: expected "URL \[NAME\]", got 5 words/],
      ["cdn.example/a.mp4", /^origins\.txt:2: "cdn\.example\/a\.mp4" is not a URL/],
      [
        "https://cdn.example/videos/",
        /^origins\.txt:2: .* has no file name at the end of its path; give a stream name/,
      ],
      ["https://cdn.example/a.mp4 ../a.mp4", /^origins\.txt:2: stream name: .*"\.\."/],
      ["https://u:p@cdn.example/a.mp4", /^origins\.txt:2: origin URL must not carry a user name or password/],
    ];
    for (const [line, re] of cases) {
      assert.throws(
        () => parseOriginList(`# first\n${line}\n`, "origins.txt"),
        (err: unknown) => err instanceof OriginListError && re.test(err.message),
        line,
      );
    }
  });

  it("refuses two origins publishing the same name, naming both", () => {
    const specs = parseOriginList("https://a.example/x.mp4\nhttps://b.example/y/x.mp4\n", "list");
    assert.throws(
      () => checkOriginNames(specs),
      /^OriginListError: list:2: stream name "x\.mp4" is already used by https:\/\/a\.example\/x\.mp4 \(list:1\)/,
    );
  });
});
