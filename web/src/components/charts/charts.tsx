/** The charts, drawn with TradingView's lightweight-charts. This module is only ever imported
 * dynamically (components/charts/index.tsx), so the library is a chunk of its own that the first
 * route does not load. */

import {
  AreaSeries,
  ColorType,
  createChart,
  LineSeries,
  LineStyle,
  type IChartApi,
  type ISeriesApi,
  type Time,
  type UTCTimestamp,
} from "lightweight-charts";
import type { Ref } from "preact";
import { useEffect, useRef } from "preact/hooks";

export type DailyPoint = { date: string; value: number };
export type TickPoint = { time: string; value: number };

function palette() {
  const style = getComputedStyle(document.documentElement);
  const read = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    text: read("--muted", "#5b6270"),
    grid: read("--border", "#d9dde4"),
    line: read("--accent", "#1f5eff"),
    compare: read("--warn", "#b45309"),
  };
}

function useChart(container: { current: HTMLDivElement | null }, timeVisible: boolean) {
  const chart = useRef<IChartApi | null>(null);
  const series = useRef<ISeriesApi<"Area"> | null>(null);
  useEffect(() => {
    if (!container.current) return;
    const colors = palette();
    const made = createChart(container.current, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "transparent" },
        textColor: colors.text,
        attributionLogo: false,
      },
      grid: { vertLines: { visible: false }, horzLines: { color: colors.grid } },
      rightPriceScale: { borderVisible: false },
      timeScale: { borderVisible: false, timeVisible, secondsVisible: timeVisible },
      handleScroll: false,
      handleScale: false,
    });
    chart.current = made;
    series.current = made.addSeries(AreaSeries, {
      lineColor: colors.line,
      topColor: `${colors.line}55`,
      bottomColor: `${colors.line}05`,
      lineWidth: 2,
      priceLineVisible: timeVisible,
    });
    return () => {
      made.remove();
      chart.current = null;
      series.current = null;
    };
  }, []);
  return { chart, series };
}

/** The element a chart draws into, labelled for screen readers and tests. */
function ChartBox(props: {
  box: Ref<HTMLDivElement>;
  label: string;
  testid: string;
  points: number;
}) {
  return (
    <div
      ref={props.box}
      class="chart"
      role="img"
      aria-label={props.label}
      data-testid={props.testid}
      data-points={props.points}
    />
  );
}

/** A value per day (the performance series), and optionally a second line to compare with (a
 * benchmark's what-if series), drawn over the same days. */
export function ValueChart(props: {
  points: DailyPoint[];
  label: string;
  testid?: string;
  compare?: DailyPoint[];
}) {
  const box = useRef<HTMLDivElement>(null);
  const { chart, series } = useChart(box, false);
  const line = useRef<ISeriesApi<"Line"> | null>(null);
  useEffect(() => {
    series.current?.setData(props.points.map((p) => ({ time: p.date as Time, value: p.value })));
    const made = chart.current;
    if (made && props.compare?.length) {
      line.current ??= made.addSeries(LineSeries, {
        color: palette().compare,
        lineWidth: 2,
        lineStyle: LineStyle.Dashed,
        priceLineVisible: false,
      });
      line.current.setData(props.compare.map((p) => ({ time: p.date as Time, value: p.value })));
    } else if (made && line.current) {
      made.removeSeries(line.current);
      line.current = null;
    }
    chart.current?.timeScale().fitContent();
  }, [props.points, props.compare]);
  return (
    <div
      ref={box}
      class="chart"
      role="img"
      aria-label={props.label}
      data-testid={props.testid ?? "value-chart"}
      data-points={props.points.length}
      data-compare-points={props.compare?.length ?? 0}
    />
  );
}

/** A price that keeps moving: `points` grows as ticks arrive; only the new ones are drawn. */
export function LiveChart(props: { points: TickPoint[]; label: string; testid?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const { chart, series } = useChart(box, true);
  const drawn = useRef(0);
  const lastTime = useRef(0);
  useEffect(() => {
    const s = series.current;
    if (!s) return;
    if (props.points.length < drawn.current) {
      drawn.current = 0; // a new symbol: start over
      lastTime.current = 0;
      s.setData([]);
    }
    for (const point of props.points.slice(drawn.current)) {
      const time = Math.floor(Date.parse(point.time) / 1000);
      if (!Number.isFinite(time) || time < lastTime.current) continue; // the chart only goes forward
      lastTime.current = time;
      s.update({ time: time as UTCTimestamp, value: point.value });
    }
    if (drawn.current === 0) chart.current?.timeScale().fitContent();
    drawn.current = props.points.length;
  }, [props.points]);
  return (
    <ChartBox
      box={box}
      label={props.label}
      testid={props.testid ?? "price-chart"}
      points={props.points.length}
    />
  );
}
