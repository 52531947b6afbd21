using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>
/// OpenTelemetry metrics export for the sample host, off by default. <c>Telemetry:Exporters</c> lists
/// <c>Console</c> and/or <c>Otlp</c>; <c>Telemetry:ExportInterval</c> (default 15 s); for OTLP,
/// <c>Telemetry:OtlpEndpoint</c> and <c>Telemetry:OtlpProtocol</c> (<c>Grpc</c> default, or <c>HttpProtobuf</c>), else
/// the standard <c>OTEL_EXPORTER_OTLP_*</c> environment variables.
/// </summary>
internal static class TelemetryConfiguration
{
    /// <summary>The gateway's meter and Orleans' own.</summary>
    private static readonly string[] Meters = [GatewayMetrics.MeterName, "Microsoft.Orleans"];

    public static IServiceCollection AddTelemetryFromConfiguration(this IServiceCollection services, IConfiguration configuration)
    {
        var section = configuration.GetSection("Telemetry");
        var exporters = ProtocolListenerOptions.SplitList(section["Exporters"]);
        var unknown = exporters.Where(e => !e.Equals("Console", StringComparison.OrdinalIgnoreCase) && !e.Equals("Otlp", StringComparison.OrdinalIgnoreCase)).ToArray();
        if (unknown.Length > 0)
        {
            throw new InvalidOperationException(
                $"Telemetry:Exporters '{string.Join(",", unknown)}' is not known. Use Console, Otlp, or both separated by a comma (empty: no export).");
        }

        if (exporters.Length == 0)
        {
            return services;
        }

        var interval = (int)section.GetValue("ExportInterval", TimeSpan.FromSeconds(15)).TotalMilliseconds;
        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(section["ServiceName"] ?? "orleansprotocol-gateway"))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(Meters);
                if (exporters.Contains("Console", StringComparer.OrdinalIgnoreCase))
                {
                    metrics.AddConsoleExporter((_, reader) => reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = interval);
                }

                if (exporters.Contains("Otlp", StringComparer.OrdinalIgnoreCase))
                {
                    metrics.AddOtlpExporter((otlp, reader) =>
                    {
                        if (section["OtlpEndpoint"] is { Length: > 0 } endpoint)
                        {
                            otlp.Endpoint = new Uri(endpoint);
                        }

                        if (section.GetValue<OtlpExportProtocol?>("OtlpProtocol") is { } protocol)
                        {
                            otlp.Protocol = protocol;
                        }

                        reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = interval;
                    });
                }
            });
        return services;
    }
}
