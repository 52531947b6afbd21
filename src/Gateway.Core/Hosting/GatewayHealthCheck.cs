using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>
/// Readiness for load balancers: healthy only while the silo is active, every listener accepts connections and the
/// gateway is not draining — so a stopping pod leaves the load balancer before its connections are closed.
/// </summary>
public sealed class GatewayHealthCheck(ProtocolGateway gateway) : IHealthCheck
{
    /// <summary>The readiness endpoint of the host (and of the Kubernetes readiness probe).</summary>
    public const string ReadyPath = "/healthz/ready";

    /// <summary>The liveness endpoint of the host (and of the Kubernetes liveness probe).</summary>
    public const string LivePath = "/healthz/live";

    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(gateway.IsReady
            ? HealthCheckResult.Healthy($"{gateway.Servers.Count} listener(s) serving.")
            : HealthCheckResult.Unhealthy("The gateway is starting, draining or has a listener that is not serving."));
}
