#!/usr/bin/python3
"""Prints a run's accuracy-versus-training-time table from RUN/log.jsonl (markdown).

    tools/train/curve.py RUN
"""
import json
import sys

import scenes


def main():
    rows = [json.loads(line) for line in open(sys.argv[1] + "/log.jsonl")]
    types = scenes.QUESTION_TYPES + ["overall"]
    print("| stage | step | minutes (total) | " + " | ".join(types) + " | CLIP random-10 | CLIP hard-10 |")
    print("|---" * (len(types) + 5) + "|")
    for r in rows:
        if r["stage"] == "eval":
            continue
        minutes = r.get("total_seconds", r["seconds"]) / 60
        acc = " | ".join(f"{100 * r[t]:.1f}" if t in r else "" for t in types)
        clip = " | ".join(f"{100 * r[k]:.1f}" if k in r else "" for k in ("clip_random10", "clip_hard10"))
        print(f"| {r['stage']} | {r['step']} | {minutes:.1f} | {acc} | {clip} |")
    for r in rows:
        if r["stage"] == "eval":
            print("\nfinal eval:", json.dumps(r))


if __name__ == "__main__":
    main()
