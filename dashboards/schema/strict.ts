// Strict views of Grafana's published dashboard model (@grafana/schema, Apache-2.0), used by
// check-dashboard.mjs and check_alerting.py (see README.md): the generated module types dashboards/lastfm-monitor.json as one object literal of type
// `Dashboard`, and every panel literal `satisfies PanelOf<"its type">`, so that TypeScript's excess
// property checks reject any key Grafana's schema does not define, at every depth.
//
// What @grafana/schema leaves open, and how it is closed here:
// - Panel.options is Record<string, unknown>: PanelOf<T> puts the panel plugin's own `Options`
//   (raw/composable/<plugin>/panelcfg/x) there.
// - FieldConfig.custom is `T & Record<string, unknown>` (anything goes): here it is exactly the
//   plugin's `FieldConfig`, or nothing (`Record<string, never>`) for plugins without one (stat,
//   gauge, bargauge, text, ...).
// - Override properties are {id: string, value?: unknown}: here `id` must name a standard field
//   option or `custom.<a key of the plugin's FieldConfig>`, and `value` must have that option's type
//   (`OverrideOf`, which the generator puts on every override property).
// - Panel.targets is Array<Record<string, unknown>>: here a Prometheus query (Grafana's
//   prometheus `Dataquery` schema, as published in @grafana/grafana-foundation-sdk) with refId:
//   every panel of this project queries Prometheus (a panel of another data source fails here).
// - String enums (LegendDisplayMode, MappingType, ...) are not assignable from JSON strings in
//   TypeScript: `J<T>` replaces every string enum by the union of its values, deeply.
// - Plugin options and custom field options are checked for unknown keys and value types, not for
//   missing keys: their CUE defaults make them required in the generated types, but Grafana merges
//   each plugin's defaults into a panel's options and field config when it loads the panel
//   (`DeepPartial`). Everything else (dashboard, variables, annotations, targets, gridPos,
//   thresholds, mappings, overrides) keeps the schema's required keys.
// - A few keys that Grafana itself reads and writes are missing from the published schema; they
//   are allowed below, each with where Grafana uses it (`GrafanaExtras`). Nothing else is.
// Transformation options, matcher options and DashboardLink are kept as the schema has them
// (transformations and matchers are registries of @grafana/data, not part of the schema).

import type {
  Dashboard as SchemaDashboard,
  DataSourceRef,
  FieldConfig as SchemaFieldConfig,
  MatcherConfig,
  Panel as SchemaPanel,
  RowPanel as SchemaRowPanel,
} from '@grafana/schema';
import type { Dataquery as PromDataquery } from '@grafana/grafana-foundation-sdk/prometheus';

import type * as annolist from '@grafana/schema/dist/esm/raw/composable/annotationslist/panelcfg/x/AnnotationsListPanelCfg_types.gen';
import type * as barchart from '@grafana/schema/dist/esm/raw/composable/barchart/panelcfg/x/BarChartPanelCfg_types.gen';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as candlestick from '@grafana/schema/dist/esm/raw/composable/candlestick/panelcfg/x/CandlestickPanelCfg_types.gen';
import type * as canvas from '@grafana/schema/dist/esm/raw/composable/canvas/panelcfg/x/CanvasPanelCfg_types.gen';
import type * as dashlist from '@grafana/schema/dist/esm/raw/composable/dashboardlist/panelcfg/x/DashboardListPanelCfg_types.gen';
import type * as gauge from '@grafana/schema/dist/esm/raw/composable/gauge/panelcfg/x/GaugePanelCfg_types.gen';
import type * as geomap from '@grafana/schema/dist/esm/raw/composable/geomap/panelcfg/x/GeomapPanelCfg_types.gen';
import type * as heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as histogram from '@grafana/schema/dist/esm/raw/composable/histogram/panelcfg/x/HistogramPanelCfg_types.gen';
import type * as logs from '@grafana/schema/dist/esm/raw/composable/logs/panelcfg/x/LogsPanelCfg_types.gen';
import type * as news from '@grafana/schema/dist/esm/raw/composable/news/panelcfg/x/NewsPanelCfg_types.gen';
import type * as nodegraph from '@grafana/schema/dist/esm/raw/composable/nodegraph/panelcfg/x/NodeGraphPanelCfg_types.gen';
import type * as piechart from '@grafana/schema/dist/esm/raw/composable/piechart/panelcfg/x/PieChartPanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as statetimeline from '@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as statushistory from '@grafana/schema/dist/esm/raw/composable/statushistory/panelcfg/x/StatusHistoryPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as text from '@grafana/schema/dist/esm/raw/composable/text/panelcfg/x/TextPanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type * as trend from '@grafana/schema/dist/esm/raw/composable/trend/panelcfg/x/TrendPanelCfg_types.gen';
import type * as xychart from '@grafana/schema/dist/esm/raw/composable/xychart/panelcfg/x/XYChartPanelCfg_types.gen';

/** JSON view of a schema type: string enums become the union of their values, deeply. */
export type J<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<J<U>>
      : T extends object
        ? { [K in keyof T]: J<T[K]> }
        : T;

/** Every key optional, deeply (arrays and unions kept, so discriminants still discriminate). */
export type DeepPartial<T> = T extends ReadonlyArray<infer U>
  ? Array<DeepPartial<U>>
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** No custom field options: only `{}` (or absent) is accepted. */
type NoCustom = Record<string, never>;

/**
 * Panel plugin id (the panel's `type`) -> [Options, FieldConfig.custom].
 * Plugin ids are those of Grafana's built-in panels (public/app/plugins/panel/<dir>/plugin.json).
 * A type that is not a key here fails the check ("does not satisfy the constraint").
 */
export interface PanelTypes {
  annolist: [annolist.Options, NoCustom];
  barchart: [barchart.Options, barchart.FieldConfig];
  bargauge: [bargauge.Options, NoCustom];
  candlestick: [candlestick.Options, candlestick.FieldConfig];
  canvas: [canvas.Options, NoCustom];
  dashlist: [dashlist.Options, NoCustom];
  gauge: [gauge.Options, NoCustom];
  geomap: [geomap.Options, NoCustom];
  heatmap: [heatmap.Options, heatmap.FieldConfig];
  histogram: [histogram.Options, histogram.FieldConfig];
  logs: [logs.Options, NoCustom];
  news: [news.Options, NoCustom];
  nodeGraph: [nodegraph.Options, NoCustom];
  piechart: [piechart.Options, piechart.FieldConfig];
  stat: [stat.Options, NoCustom];
  'state-timeline': [statetimeline.Options, statetimeline.FieldConfig & GrafanaExtras['stateTimelineCustom']];
  'status-history': [statushistory.Options, statushistory.FieldConfig];
  table: [table.Options, table.FieldConfig];
  text: [text.Options, NoCustom];
  timeseries: [timeseries.Options, timeseries.FieldConfig];
  trend: [trend.Options, trend.FieldConfig];
  xychart: [xychart.Options, xychart.FieldConfig];
}

/**
 * Keys Grafana reads and writes that @grafana/schema 13.2 does not declare.
 * - Variable `definition`: the query text the variables list shows, written by Grafana's query
 *   variable editor (public/app/features/variables/types.ts QueryVariableModel.definition).
 * - Prometheus annotation `expr`, `step` (legacy place of target.expr / target.interval, moved by the
 *   prometheus data source's prepareAnnotation), `titleFormat`, `textFormat`, `tagKeys`,
 *   `useValueForTime` (read by its annotation support and written by its AnnotationQueryEditor;
 *   the v2 dashboard schema keeps them as AnnotationQuery `legacyOptions`).
 * - state-timeline custom `spanNulls`, `insertNulls`: the panel's "Connect null values" and
 *   "Disconnect values" editors (public/app/plugins/panel/state-timeline/module.tsx imports
 *   SpanNullsEditor and InsertNullsEditor), absent from its panelcfg.cue.
 */
export interface GrafanaExtras {
  variable: { definition?: string };
  annotation: {
    expr?: string;
    step?: string;
    titleFormat?: string;
    textFormat?: string;
    tagKeys?: string;
    useValueForTime?: boolean;
  };
  stateTimelineCustom: { spanNulls?: boolean | number; insertNulls?: boolean | number };
}

/** The standard field options (everything of FieldConfig but `custom`). */
type StdFieldConfig = Omit<SchemaFieldConfig, 'custom'>;

export type FieldConfig<C> = J<StdFieldConfig> & { custom?: DeepPartial<J<C>> };

/** One override property: a standard option or `custom.<key>`, with that option's value type. */
export type OverrideProperty<C> =
  | { [K in keyof StdFieldConfig & string]-?: { id: K; value?: J<StdFieldConfig[K]> } }[keyof StdFieldConfig & string]
  | { [K in keyof C & string]-?: { id: `custom.${K}`; value?: DeepPartial<J<C[K]>> } }[keyof C & string];

/** Override property ids of a plugin: the standard options and `custom.<key>`. */
export type OverrideIds<C> = (keyof StdFieldConfig & string) | `custom.${keyof C & string}`;
type OverrideValue<C, Id> = Id extends `custom.${infer K}`
  ? K extends keyof C
    ? DeepPartial<J<C[K]>>
    : never
  : Id extends keyof StdFieldConfig
    ? J<StdFieldConfig[Id]>
    : never;
/**
 * One override property of a panel of type T, checked against its own id (the generator writes
 * each property `satisfies OverrideOf<"<panel type>", "<id>">`): an unknown id fails the
 * constraint, and the value is checked as a fresh literal of that option's type (the union
 * `OverrideProperty` alone lets nested keys of values such as `mappings` through).
 */
export type OverrideOf<T extends keyof PanelTypes, Id extends OverrideIds<PanelTypes[T][1]>> = {
  id: Id;
  value?: OverrideValue<PanelTypes[T][1], Id>;
};

export interface FieldConfigSource<C> {
  defaults: FieldConfig<C>;
  overrides: Array<{ matcher: J<MatcherConfig>; properties: Array<OverrideProperty<C>> }>;
}

/** A Prometheus query of a panel: Grafana's prometheus Dataquery schema, refId required. */
export type PrometheusQuery = J<Omit<PromDataquery, '_implementsDataqueryVariant' | 'refId' | 'datasource'>> & {
  refId: string;
  datasource?: DataSourceRef;
};

type PanelCommon = J<Omit<SchemaPanel, 'type' | 'options' | 'fieldConfig' | 'targets'>>;

/** A panel of plugin type T, with that plugin's options and field config. */
export type PanelOf<T extends keyof PanelTypes> = PanelCommon & {
  type: T;
  options?: DeepPartial<J<PanelTypes[T][0]>>;
  fieldConfig?: FieldConfigSource<PanelTypes[T][1]>;
  targets?: PrometheusQuery[];
};

/** Every panel that may sit in a row or at the top level. */
export type AnyPanel = { [T in keyof PanelTypes]: PanelOf<T> }[keyof PanelTypes];

/** A row: its collapsed panels are strict panels too. */
export type RowPanel = J<Omit<SchemaRowPanel, 'panels'>> & { panels: AnyPanel[] };

type SchemaVariable = NonNullable<NonNullable<SchemaDashboard['templating']>['list']>[number];
type SchemaAnnotation = NonNullable<NonNullable<SchemaDashboard['annotations']>['list']>[number];

/** A template variable: the schema's VariableModel (+ `definition`). */
export type Variable = J<SchemaVariable> & GrafanaExtras['variable'];

/** An annotation query: the schema's AnnotationQuery, its target a Prometheus query (+ legacy keys). */
export type Annotation = J<Omit<SchemaAnnotation, 'target'>> & { target?: PrometheusQuery } & GrafanaExtras['annotation'];

/** The dashboard: @grafana/schema's Dashboard, with the strict panels, variables and annotations. */
export type Dashboard = J<Omit<SchemaDashboard, 'panels' | 'templating' | 'annotations'>> & {
  panels?: Array<AnyPanel | RowPanel>;
  templating?: { list?: Variable[] };
  annotations?: { list?: Annotation[] };
};

// ---- Alert rule query models (used by check_alerting.py) ----
// The `model` of a Grafana-managed alert rule's query is the query of its data source: a
// Prometheus query, or for datasourceUid "__expr__" a server-side expression. Both as Grafana
// publishes them in @grafana/grafana-foundation-sdk (prometheus Dataquery; expr TypeMath,
// TypeReduce, TypeResample, TypeClassicConditions, TypeThreshold, TypeSql, generated from
// Grafana's pkg/expr query schema), discriminated by `type`.
import type * as expr from '@grafana/grafana-foundation-sdk/expr';

type Variant<T> = J<Omit<T, '_implementsDataqueryVariant' | 'refId'>> & { refId: string };
export type ExprModel =
  | Variant<expr.TypeMath>
  | Variant<expr.TypeReduce>
  | Variant<expr.TypeResample>
  | Variant<expr.TypeClassicConditions>
  | Variant<expr.TypeThreshold>
  | Variant<expr.TypeSql>;
export type AlertQueryModel<K extends 'prometheus' | 'expr'> = K extends 'expr' ? ExprModel : PrometheusQuery;
