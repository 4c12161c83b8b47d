/** uPlot, loaded by its own script tag (served by the dashboard from the uplot package). */
declare const uPlot: typeof import("uplot");
type UPlot = import("uplot");
type UPlotData = import("uplot").AlignedData;
