"""The report of a command without a template of its own (topk, online, membership, distribution): summary.md
and a self-contained report.html with a headline figure, tables, plots and the provenance block, like every other
command's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustaudit.report.html import png, provenance_markdown, provenance_rows, render


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class CommandReport:
    """What a command's report shows; `write` puts summary.md and report.html into a run folder."""

    title: str
    subtitle: str
    headline_label: str
    headline: str
    tables: list[Table] = field(default_factory=list)
    plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, base64 PNG)

    def markdown(self, r: dict[str, Any]) -> str:
        lines = [f"# {self.title}", "", self.subtitle, "", f"**{self.headline_label}: {self.headline}**"]
        for t in self.tables:
            lines += ["", f"## {t.title}", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
            lines += ["| " + " | ".join(row) + " |" for row in t.rows]
        lines += provenance_markdown(r["provenance"], r.get("caveats", []), r.get("gate"))
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path, r: dict[str, Any]) -> Path:
        d = Path(out)
        tmp = d / "summary.md.tmp"
        tmp.write_text(self.markdown(r))
        tmp.replace(d / "summary.md")
        return render(d, "command.html.j2", title=self.title, subtitle=self.subtitle,
                      headline_label=self.headline_label, headline=self.headline, tables=self.tables,
                      plots=self.plots, gate=r.get("gate"), caveats=r.get("caveats", []),
                      provenance=provenance_rows(r["provenance"], r.get("gate")))


def topk_report(r: dict[str, Any]) -> CommandReport:
    """Ordered top-K attacks: the best success rate at the largest K, one row per attack and K."""
    rows = r["results"]
    top = max(row["k"] for row in rows) if rows else 0
    best = max((row for row in rows if row["k"] == top), key=lambda row: row["success_rate"], default=None)
    table = Table("success per attack and K", ["attack", "K", "success", "95% CI", "mean L2", "mean Linf",
                                               "s/example"],
                  [[row["attack"], str(row["k"]), f"{row['success_rate']:.3f}",
                    f"{row['success_rate_ci95'][0]:.3f}-{row['success_rate_ci95'][1]:.3f}",
                    "-" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}",
                    "-" if row["mean_linf"] is None else f"{row['mean_linf']:.3f}", f"{row['seconds_per_example']:.3f}"]
                   for row in rows])
    return CommandReport(
        title=f"Ordered top-K attacks on {r['model']}",
        subtitle=f"{r['n']} examples · {r['classes']} classes · split at {r['layer']} · budget {r['budget']} · "
                 "minimum-norm: no eps-ball",
        headline_label=f"best success rate at K={top}" + ("" if best is None else f" ({best['attack']})"),
        headline="n/a" if best is None else f"{best['success_rate']:.3f}", tables=[table])


def online_report(r: dict[str, Any]) -> CommandReport:
    """Online transfer attack: the best strategy's competitive ratio, one row per strategy."""
    strategies = r["strategies"]
    name, best = max(strategies.items(), key=lambda item: item[1]["competitive_ratio"])
    table = Table("strategies", ["strategy", "competitive ratio", "95% CI", "successes (mean)"],
                  [[n, f"{s['competitive_ratio']:.3f}",
                    "n/a" if s["ci95"] is None else f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}",
                    f"{s['competitive_ratio'] * r['offline_successes']:.2f}"] for n, s in strategies.items()])
    return CommandReport(
        title="Online transfer attack on a stream",
        subtitle=f"k={r['k']} of {r['n']} · {r['attack']} on the surrogate · offline optimum "
                 f"{r['offline_successes']} successes · {r['fooling_examples']} attacked examples fool the target · "
                 f"{r['target_queries']} target queries",
        headline_label=f"best competitive ratio ({name})", headline=f"{best['competitive_ratio']:.3f}",
        tables=[table])


def membership_report(r: dict[str, Any]) -> CommandReport:
    """Membership inference: the highest AUC, one row per attack, the ROC curves on log-log axes (as LiRA)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = r["attacks"]
    name, best = max(attacks.items(), key=lambda item: item[1]["auc"])
    table = Table("attacks", ["attack", "AUC", "95% CI", "balanced accuracy", "TPR @ 1% FPR", "TPR @ 0.1% FPR",
                              "TPR @ 0% FPR", "queries/example", "seconds", "calibration"],
                  [[n, f"{a['auc']:.3f}", f"{a['auc_ci95'][0]:.3f}-{a['auc_ci95'][1]:.3f}", f"{a['accuracy']:.3f}",
                    f"{a['tpr_at_fpr']['0.01']:.3f}", f"{a['tpr_at_fpr']['0.001']:.3f}", f"{a['tpr_at_fpr']['0']:.3f}",
                    f"{a['queries_per_example']:.1f}", f"{a['seconds']:.1f}", a["calibration"]]
                   for n, a in attacks.items()])
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    for n, a in attacks.items():
        fpr, tpr = a["roc"]["fpr"], a["roc"]["tpr"]
        ax.plot([max(f, 1e-4) for f in fpr], [max(t, 1e-4) for t in tpr], label=f"{n} (AUC {a['auc']:.2f})")
    ax.plot([1e-4, 1], [1e-4, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate",
           xlim=(1e-4 if r["n_nonmembers"] >= 1000 else 1 / max(r["n_nonmembers"], 1) / 2, 1))
    ax.legend(fontsize=7)
    return CommandReport(
        title=f"Membership inference on {r['model']}",
        subtitle=f"{r['n_members']} members · {r['n_nonmembers']} non-members · {r['access']} access · train "
                 f"accuracy {r['train_accuracy']:.3f}, test accuracy {r['test_accuracy']:.3f}",
        headline_label=f"highest AUC ({name})", headline=f"{best['auc']:.3f}", tables=[table],
        plots=[("ROC curves, log-log (random guessing on the dashed diagonal)", png(fig))])


def distribution_report(r: dict[str, Any]) -> CommandReport:
    """Distribution inference: the most accurate attack, one row per attack with its interval and n_leaked."""
    attacks = r["attacks"]
    name, best = max(attacks.items(), key=lambda item: item[1]["accuracy"])

    def leak(v: float | None) -> str:
        return "unbounded" if v is None else f"{v:.2f}"

    table = Table("attacks", ["attack", "accuracy", "95% CI", "n_leaked", "n_leaked 95% CI", "seconds", "rule"],
                  [[n, f"{a['accuracy']:.3f}", f"{a['accuracy_ci95'][0]:.3f}-{a['accuracy_ci95'][1]:.3f}",
                    leak(a["n_leaked"]), f"{leak(a['n_leaked_ci95'][0])}-{leak(a['n_leaked_ci95'][1])}",
                    f"{a['seconds']:.1f}", a["rule"]] for n, a in attacks.items()])
    a0, a1 = r["ratios"]
    return CommandReport(
        title=f"Distribution inference: share {a0:g} vs {a1:g} of {r['property']}",
        subtitle=f"{r['games']} games ({r['victims_per_ratio']} target models per ratio, {r['size']} training "
                 f"records each) · {r['shadows_per_ratio']} adversary models per ratio · {r['queries_per_model']} "
                 f"label queries per target model (black box) · training {r['seconds_training']:.0f} s",
        headline_label=f"best attack accuracy ({name})", headline=f"{best['accuracy']:.3f}", tables=[table])


def inversion_report(r: dict[str, Any], images: Any, labels: Any, folder: Path) -> CommandReport:
    """Model inversion: the evaluator's top-1 accuracy on the reconstructions, the image grid (one row per class,
    every seed's reconstructions), queries per stage, surrogate agreement; grid.png written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = r["attack_accuracy"]
    plots = []
    if images.dim() == 5:  # seeds × n × C × H × W: a grid of classes × (seeds · samples)
        classes = r["inverted"]
        per_row = images.shape[0] * r["samples_per_class"]
        fig, axes = plt.subplots(len(classes), per_row, figsize=(0.6 * per_row + 0.6, 0.6 * len(classes) + 0.3),
                                 dpi=110, squeeze=False)
        flat, flat_y = images.flatten(0, 1), labels.repeat(images.shape[0])
        for row, c in enumerate(classes):
            for col, img in enumerate(flat[flat_y == c][:per_row]):
                ax = axes[row][col]
                pic = img.permute(1, 2, 0).numpy()
                ax.imshow(pic[..., 0] if pic.shape[2] == 1 else pic.clip(0, 1), cmap="gray" if pic.shape[2] == 1
                          else None)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row][0].set_ylabel(str(c), rotation=0, labelpad=10)
        fig.savefig(folder / "grid.png", bbox_inches="tight")
        plots.append(("reconstructions: one row per class, every seed", png(fig)))
    rows = [["target queries (this run's path)", str(r["target_queries"])],
            ["target queries made (with repeats after a resume)", str(r["target_queries_total"])]]
    rows += [[f"  stage {name}", f"{q} queries, {r['stage_seconds'].get(name, 0):.0f} s"]
             for name, q in r["stage_queries"].items()]
    rows += [[f"agreement of {name} with the target (held-out fakes)", f"{a:.3f}"]
             for name, a in r["surrogate_agreement"].items()]
    rows += [[f"accuracy of {name} on the private examples (--private-eval)", f"{a:.3f}"]
             for name, a in (r.get("surrogate_private_accuracy") or {}).items()]
    if r["knn_distance"] is not None:
        rows.append([f"KNN distance to the nearest private example ({r['knn_space']})",
                     f"{r['knn_distance']:.3f} (random generator samples: {r['knn_distance_random']:.3f})"])
    if r["uninvertible_classes"]:
        rows.append(["classes the target never predicted on generated images", str(r["uninvertible_classes"])])
    tables = [Table("attack", ["", "value"], rows)]
    if acc is not None:
        def ci(v: dict[str, Any]) -> str:
            return "-" if v["ci95"] is None else f"{v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}"

        base = r["random_samples_accuracy"]
        tables.insert(0, Table("evaluator accuracy (mean over seeds, 95% t-interval)", ["", "top-1", "95% CI",
                                                                                         "top-5"],
                               [["reconstructions", f"{acc['top1']['mean']:.3f}", ci(acc["top1"]),
                                 f"{acc['top5']['mean']:.3f}"],
                                ["random generator samples (no optimisation)", f"{base['top1']['mean']:.3f}", "-",
                                 f"{base['top5']['mean']:.3f}"]]))
        tables.insert(1, Table("top-1 per class", ["class", "top-1"],
                               [[c, f"{a:.3f}"] for c, a in acc["top1_per_class"].items()]))
    return CommandReport(
        title=f"Model inversion of {r['model']}",
        subtitle=f"{r['method']} · {r['access']} access · {len(r['inverted'])} of {r['classes']} classes · "
                 f"{r['seeds']} seeds × {r['samples_per_class']} per class · public set of {r['public_size']}",
        headline_label="evaluator top-1 accuracy on the reconstructions" if acc else "target queries",
        headline=f"{acc['top1']['mean']:.3f}" if acc else str(r["target_queries"]), tables=tables, plots=plots)


def safety_report(r: dict[str, Any]) -> CommandReport:
    """The Lipschitz safety guarantee: certified accuracy at eps; the attacks' figure beside when given."""
    t = r["threat"]
    lo, hi = r["certified_accuracy_ci95"]
    rows = [["Lipschitz constant (L2, scores)", f"{r['lipschitz']:.4g} ({r['lipschitz_source']})"],
            ["clean accuracy", f"{r['clean_accuracy']:.3f}"],
            [f"certified accuracy at {t['norm']} {t['eps']:g}", f"{r['certified_accuracy']:.3f} ({lo:.3f}-{hi:.3f})"],
            [f"median safe region ({r['safe_unit']}), correct examples", f"{r['median_safe']:.4g}"],
            ["score queries", str(r["queries_total"])]]
    b = r.get("beside")
    if b is not None:
        blo, bhi = b["robust_accuracy_ci95"]
        rows += [[f"robust accuracy under attack ({', '.join(b['attacks'])})",
                  f"{b['robust_accuracy']:.3f} ({blo:.3f}-{bhi:.3f})"],
                 ["certified and not broken", str(b["certified_and_attack_robust"])],
                 ["not broken, not certified (the gap)", str(b["attack_robust_not_certified"])],
                 ["certified but broken (the constant is wrong)", str(len(b["broken_but_certified"]))]]
    shown = r["per_example"][:50]
    table = Table(f"per example (first {len(shown)})", ["index", "label", "prediction", "margin", "L2 radius",
                                                        f"safe ({r['safe_unit']})", "certified", "attacks"],
                  [[str(p["index"]), str(p["label"]), str(p["prediction"]), f"{p['margin']:.3f}",
                    f"{p['radius_l2']:.4f}", f"{p['safe']:.4g}", "yes" if p["certified"] else "no",
                    "-" if "attack_robust" not in p else ("robust" if p["attack_robust"] else
                                                          f"broken ({p['broken_by']})")] for p in shown])
    return CommandReport(
        title=f"Lipschitz safety on {r['model']}",
        subtitle=f"{r['n']} examples · {t['norm']} eps {t['eps']:g} · certified radius = margin / (√2·L) (Wicker, "
                 "Huang & Kwiatkowska 2018)",
        headline_label=f"certified accuracy at {t['norm']} {t['eps']:g}",
        headline=f"{r['certified_accuracy']:.3f}", tables=[Table("summary", ["", "value"], rows), table])


def explain_report(doc: dict[str, Any], maps: dict[str, Any], x: Any) -> CommandReport:
    """Explanations: the recommended method, the faithfulness table, the maps side by side (images) or the
    attributions and global importances (tables)."""

    def ci(v: dict[str, Any]) -> str:
        return "-" if v["ci95"] is None else f"{v['ci95'][0]:.4g} to {v['ci95'][1]:.4g}"

    f = doc["faithfulness"]
    rows = [[m + (" (recommended)" if m == doc["recommended"] else ""), f"{f[m]['lfa_loss']['mean']:.4g}",
             ci(f[m]["lfa_loss"]), f"{f[m]['pgi']['mean']:.4g}", f"{f[m]['pgu']['mean']:.4g}"]
            for m in sorted(f, key=lambda m: f[m]["lfa_loss"]["mean"])]
    tables = [Table(f"faithfulness on {doc['neighbourhood']} ({doc['seeds']} seeds; PGI/PGU at k = "
                    f"{doc['settings']['k'][0]} features)",
                    ["method", "LFA loss (lower is better)", "95% CI over seeds", "PGI (higher)", "PGU (lower)"], rows)]
    g = doc.get("global")
    if g is not None:
        lo, hi = g["fidelity_ci95"]
        tables.append(Table(f"global: {g['kind']} surrogate on the top {len(g['top'])} probed features",
                            ["", "value"],
                            [["top features", ", ".join(g["features"])],
                             ["fidelity to the black box (held out)", f"{g['fidelity']:.3f} ({lo:.3f}-{hi:.3f}, "
                              f"{g['heldout_rows']} rows)"],
                             ["rules", "; ".join(g["rules"].splitlines()) if g["kind"] == "logistic" else
                              f"a depth-4 tree, {g['rules'].count(chr(10))} lines in explanations.json"]]))
    return CommandReport(
        title="Explanations", subtitle=f"{doc['n']} examples · methods {', '.join(doc['methods'])} · target "
                                       f"{doc['target']} · features {doc['features']} · {doc['queries_total']} "
                                       "queries",
        headline_label=f"most faithful on {doc['neighbourhood']}", headline=doc["recommended"], tables=tables,
        plots=_explain_plots(doc, maps, x))


def _explain_plots(doc: dict[str, Any], maps: dict[str, Any], x: Any) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = doc["methods"]
    plots = []
    if x.ndim == 4:
        shown = min(4, len(x))
        fig, axes = plt.subplots(shown, len(methods) + 1, figsize=(1.6 * (len(methods) + 1), 1.7 * shown),
                                 squeeze=False)
        for r in range(shown):
            img = x[r].transpose(1, 2, 0)
            axes[r][0].imshow(img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0, 1), cmap="gray")
            axes[r][0].set_title("input" if r == 0 else "", fontsize=8)
            for c, m in enumerate(methods, start=1):
                a = maps[m][r].sum(0)
                v = float(np.abs(a).max()) or 1.0
                axes[r][c].imshow(a, cmap="bwr", vmin=-v, vmax=v)
                if r == 0:
                    axes[r][c].set_title(m, fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        plots.append(("attribution maps (red supports the explained class, blue opposes it)", png(fig)))
    else:
        top = np.argsort(-np.abs(maps[methods[0]][0]))[:20]
        fig, ax = plt.subplots(figsize=(7, 3))
        width = 0.8 / len(methods)
        for j, m in enumerate(methods):
            ax.bar(np.arange(len(top)) + j * width, maps[m][0][top], width, label=m)
        ax.set_xticks(np.arange(len(top)) + 0.4, [f"x{t}" for t in top], rotation=90, fontsize=7)
        ax.legend(fontsize=7)
        plots.append(("example 0: attributions of its 20 largest features", png(fig)))
    g = doc.get("global")
    if g is not None:
        imp = np.array(g["importance"])
        order = np.argsort(-imp)[:30]
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.bar(range(len(order)), imp[order])
        ax.set_xticks(range(len(order)), [f"x{t}" for t in order], rotation=90, fontsize=7)
        ax.set_ylabel("probe importance")
        plots.append(("global probing importance (30 largest)", png(fig)))
    return plots


def harden_report(doc: dict[str, Any]) -> CommandReport:
    """Hardening: the unhardened and the hardened model side by side under the same audit, the training log, and
    the method's own figures (PubDef's game, the convex optimum)."""
    a, b = doc["audit"]["unhardened"], doc["audit"]["hardened"]
    what = "worst-case transfer robust accuracy" if a["command"] == "transfer" else "robust accuracy"

    def row(tag: str, r: dict[str, Any]) -> list[str]:
        lo, hi = r["robust_accuracy_ci95"]
        return [tag, f"{r['clean_accuracy']:.3f}", f"{r['robust_accuracy']:.3f}", f"{lo:.3f}-{hi:.3f}",
                f"robustaudit {r['command']} ({r['folder']})"]

    threat = doc["threat"]
    tables = [Table(f"the same audit of both models: {threat['norm']} eps {threat['eps']:g}, {doc['n_test']} held-out "
                    "examples", ["model", "clean accuracy", what, "95% CI", "audit"],
                    [row("unhardened", a), row(f"hardened ({doc['method']})", b)])]
    if a["command"] == "transfer":
        pairs = {(p["source"], p["attack"]): p["robust_accuracy"] for p in a["pairs"]}
        tables.append(Table("transfer pairs (attacker model, attack)", ["attacker", "attack", "unhardened",
                                                                         "hardened"],
                            [[p["source"], p["attack"], f"{pairs.get((p['source'], p['attack']), float('nan')):.3f}",
                              f"{p['robust_accuracy']:.3f}"] for p in b["pairs"]]))
    game = doc.get("pubdef")
    if game is not None:
        tables.append(Table(f"PubDef's game: accuracy of each source (column) on PGD examples of each source (row); "
                            f"chosen: {', '.join(game['chosen'])}", ["crafted on", *game["sources"]],
                            [[s, *(f"{v:.3f}" for v in r)] for s, r in zip(game["sources"], game["matrix"],
                                                                          strict=True)]))
    cvx = doc.get("convex")
    if cvx is not None:
        tables.append(Table("convex programs (objective = mean hinge (worst case when robust) + weight decay)",
                            ["program", "optimum", "recovered network", "width", "patterns", "solver", "seconds"],
                            [[k, f"{v['optimum']:.6g}", f"{v['recovered_objective']:.6g}", str(v["width"]),
                              str(v["patterns"]), f"{v['solver']} ({v['status']})", f"{v['seconds']:.1f}"]
                             for k, v in cvx.items() if isinstance(v, dict)]))
    logs = [(k, doc[k]) for k in ("unhardened_log", "log") if doc.get(k)]
    for name, log in logs:
        tables.append(Table(f"training log: {'unhardened' if name == 'unhardened_log' else doc['method']}",
                            ["epoch", "loss", "seconds"],
                            [[str(e["epoch"]), f"{e['loss']:.4f}", f"{e['seconds']:.1f}"] for e in log]))
    return CommandReport(
        title=f"Hardening: {doc['method']}",
        subtitle=f"{doc['n_train']} training examples · {doc['classes']} classes · audited on {doc['n_test']}",
        headline_label=f"{what}, unhardened -> hardened",
        headline=f"{a['robust_accuracy']:.3f} -> {b['robust_accuracy']:.3f} (clean {a['clean_accuracy']:.3f} -> "
                 f"{b['clean_accuracy']:.3f})", tables=tables)
