using System.Collections.Concurrent;

namespace OrleansProtocol.Diagnostics;

/// <summary>
/// The one rule for logging what a client can make happen at will (junk connections, limits hit): per listener and
/// kind, the first occurrence and every 1,000th are logged at their level with the count so far; the others at Debug.
/// The exact counts are in the metrics. Without it one client could write a log line per connection it opens.
/// </summary>
internal static class LogSampling
{
    private static readonly ConcurrentDictionary<(string Listener, string Kind), long> Counts = new();

    /// <summary>Whether the <paramref name="count"/>th occurrence is logged at its level: the first and every 1,000th.</summary>
    public static bool IsSampled(long count) => count == 1 || count % 1000 == 0;

    /// <summary>Counts one more <paramref name="kind"/> on <paramref name="listener"/> (in this silo) and returns the count.</summary>
    public static long Next(string listener, string kind) =>
        Counts.AddOrUpdate((listener, kind), 1, static (_, count) => count + 1);

    /// <summary>The listener of a connection id (<c>"{listener}/{guid}"</c>).</summary>
    public static string ListenerOf(string connectionId) =>
        connectionId.LastIndexOf('/') is var slash and > 0 ? connectionId[..slash] : connectionId;
}
