/** The charts as light placeholders until their chunk (lightweight-charts) has loaded. */

import { useEffect, useState } from "preact/hooks";
import type { DailyPoint, TickPoint } from "./charts";

export type { DailyPoint, TickPoint };

type Charts = typeof import("./charts");
let loading: Promise<Charts> | null = null;

function useCharts(): Charts | null {
  const [charts, setCharts] = useState<Charts | null>(null);
  useEffect(() => {
    let live = true;
    loading ??= import("./charts");
    loading.then((module) => live && setCharts(module)).catch(() => undefined);
    return () => {
      live = false;
    };
  }, []);
  return charts;
}

export function ValueChart(props: {
  points: DailyPoint[];
  label: string;
  testid?: string;
  compare?: DailyPoint[];
}) {
  const charts = useCharts();
  return charts ? <charts.ValueChart {...props} /> : <div class="chart" aria-busy="true" />;
}

export function LiveChart(props: { points: TickPoint[]; label: string; testid?: string }) {
  const charts = useCharts();
  return charts ? <charts.LiveChart {...props} /> : <div class="chart" aria-busy="true" />;
}
