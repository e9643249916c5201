// A small hand-written SVG line chart: a few series over a shared x axis, with an optional band.

export interface Series {
  name: string;
  color: string;
  points: { x: number; y: number }[];
  dashed?: boolean;
}

export interface Band {
  color: string;
  points: { x: number; lo: number; hi: number }[];
}

interface Props {
  series: Series[];
  band?: Band;
  height?: number;
  yLabel?: string;
  xFormat?: (x: number) => string;
  testId?: string;
}

export function Chart({ series, band, height = 180, yLabel, xFormat, testId }: Props) {
  const width = 640;
  const pad = { l: 48, r: 12, t: 10, b: 24 };
  const xs = [...series.flatMap((s) => s.points.map((p) => p.x)), ...(band?.points.map((p) => p.x) ?? [])];
  const ys = [
    ...series.flatMap((s) => s.points.map((p) => p.y)),
    ...(band?.points.flatMap((p) => [p.lo, p.hi]) ?? []),
  ];
  const x0 = Math.min(...xs, 0 + (xs.length ? Infinity : 0));
  const x1 = Math.max(...xs, x0 + 1);
  const y1 = Math.max(...ys, 1) * 1.1;
  const y0 = Math.min(0, ...ys);
  const sx = (x: number) => pad.l + ((x - x0) / (x1 - x0 || 1)) * (width - pad.l - pad.r);
  const sy = (y: number) => pad.t + (1 - (y - y0) / (y1 - y0 || 1)) * (height - pad.t - pad.b);
  const ticks = [y0, (y0 + y1) / 2, y1];
  return (
    <svg viewBox={`0 0 ${width} ${height}`} className="w-full" role="img" aria-label={yLabel} data-testid={testId}>
      {ticks.map((t) => (
        <g key={t}>
          <line x1={pad.l} x2={width - pad.r} y1={sy(t)} y2={sy(t)} stroke="#e2e8f0" />
          <text x={pad.l - 6} y={sy(t) + 4} textAnchor="end" fontSize="10" fill="#64748b">
            {t >= 100 ? Math.round(t) : t.toFixed(1)}
          </text>
        </g>
      ))}
      {band && band.points.length > 0 && (
        <polygon
          fill={band.color}
          opacity={0.25}
          points={[
            ...band.points.map((p) => `${sx(p.x)},${sy(p.hi)}`),
            ...[...band.points].reverse().map((p) => `${sx(p.x)},${sy(p.lo)}`),
          ].join(" ")}
        />
      )}
      {series.map((s) => (
        <polyline
          key={s.name}
          fill="none"
          stroke={s.color}
          strokeWidth={2}
          strokeDasharray={s.dashed ? "5 4" : undefined}
          points={s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")}
        />
      ))}
      {xs.length > 0 && xFormat && (
        <>
          <text x={pad.l} y={height - 6} fontSize="10" fill="#64748b">
            {xFormat(x0)}
          </text>
          <text x={width - pad.r} y={height - 6} fontSize="10" fill="#64748b" textAnchor="end">
            {xFormat(x1)}
          </text>
        </>
      )}
      {yLabel && (
        <text x={pad.l + 4} y={pad.t + 10} fontSize="10" fill="#475569">
          {yLabel}
        </text>
      )}
    </svg>
  );
}

export function Legend({ series }: { series: { name: string; color: string }[] }) {
  return (
    <div className="flex flex-wrap gap-3 text-xs text-slate-600">
      {series.map((s) => (
        <span key={s.name} className="flex items-center gap-1">
          <span className="inline-block h-2 w-3 rounded" style={{ background: s.color }} />
          {s.name}
        </span>
      ))}
    </div>
  );
}
