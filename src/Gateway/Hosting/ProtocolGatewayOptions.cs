namespace OrleansProtocol.Gateway;

/// <summary>Settings shared by every listener of a silo's protocol gateway.</summary>
public sealed class ProtocolGatewayOptions
{
    /// <summary>
    /// How long a stopping silo waits for its connections to close gracefully (each is asked to flush and close)
    /// before it aborts the rest. Defaults to 20 seconds, below the host's 30-second shutdown timeout, as Kestrel
    /// drains within <c>HostOptions.ShutdownTimeout</c>.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(20);
}
