using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// Who a listener lets in: its own connection limit, the silo's, and the per-address limit — counted at accept, or
/// for a listener behind a load balancer once the PROXY header names the client — and the refusals' count and sampled
/// log. Every place taken is given back for exactly the address counted.
/// </summary>
/// <remarks>Lock-free: the per-address table is concurrent and holds only addresses with open connections.</remarks>
internal sealed class ConnectionAdmission(
    string listener, ProtocolListenerOptions options, SiloConnectionBudget budget, GatewayMetrics metrics, ILogger logger, Func<int> openConnections)
{
    private readonly ConcurrentDictionary<IPAddress, int> _perAddress = new();
    private long _refused;

    /// <summary>Connections refused at accept because a connection limit was reached.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Open connections counted against client addresses (<see cref="ProtocolListenerOptions.MaxConnectionsPerAddress"/>).</summary>
    public int CountedAddresses => _perAddress.Values.Sum();

    /// <summary>
    /// Decides on a connection just accepted from <paramref name="remote"/>: its metric tag and a sentence for the log
    /// when a limit refuses it (counted and logged here), or null with the address it now holds a place for.
    /// </summary>
    public (string Tag, string Detail)? Admit(EndPoint? remote, out IPAddress? counted)
    {
        counted = null;
        var refusal = LimitReached();

        // Behind a load balancer (PROXY protocol) the client's address is known only once its header is read: the
        // per-address limit is decided there instead (AdmitProxied).
        if (refusal is null && !options.ProxyProtocol && remote is IPEndPoint ip)
        {
            refusal = TryCountAddress(ip.Address, out counted);
        }

        if (refusal is var (tag, detail))
        {
            Refuse(tag, detail, remote);
        }

        return refusal;
    }

    /// <summary>
    /// A PROXY header named the client: counts it under the per-address limit. Returns the refusal's detail when the
    /// limit is reached (the connection then refuses itself), or null.
    /// </summary>
    public string? AdmitProxied(GatewayConnection connection, IPAddress client)
    {
        if (TryCountAddress(client, out var counted) is var (tag, detail))
        {
            Refuse(tag, detail, connection.Info.RemoteEndPoint);
            return detail;
        }

        connection.CountedAddress = counted;
        return null;
    }

    /// <summary>Gives back the place <paramref name="address"/> held, removing the entry at zero.</summary>
    public void Release(IPAddress? address)
    {
        while (address is not null && _perAddress.TryGetValue(address, out var n)
            && !(n <= 1 ? _perAddress.TryRemove(new KeyValuePair<IPAddress, int>(address, n)) : _perAddress.TryUpdate(address, n - 1, n)))
        {
        }
    }

    /// <summary>The listener and silo limits a new connection would break, or null.</summary>
    private (string Tag, string Detail)? LimitReached()
    {
        if (options.MaxConnections is { } max && openConnections() >= max)
        {
            return ("listener_limit", $"the listener's limit of {max} connections is reached");
        }

        if (budget.Exhausted)
        {
            return ("silo_limit", $"the silo's limit of {budget.Max} connections is reached");
        }

        return null;
    }

    /// <summary>Takes a place for a connection from <paramref name="address"/> under the per-address limit, or says why not.</summary>
    private (string Tag, string Detail)? TryCountAddress(IPAddress address, out IPAddress? counted)
    {
        counted = null;
        if (options.MaxConnectionsPerAddress is not { } limit)
        {
            return null;
        }

        address = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        while (true)
        {
            if (_perAddress.TryGetValue(address, out var open))
            {
                if (open >= limit)
                {
                    return ("address_limit", $"the limit of {limit} connections per client address is reached for {address}");
                }

                if (_perAddress.TryUpdate(address, open + 1, open))
                {
                    break;
                }
            }
            else if (_perAddress.TryAdd(address, 1))
            {
                break;
            }
        }

        counted = address;
        return null;
    }

    private void Refuse(string tag, string detail, EndPoint? remote)
    {
        metrics.ConnectionRejected(listener, tag);
        var count = Interlocked.Increment(ref _refused);
        if (GatewayLog.IsSampled(count))
        {
            GatewayLog.ConnectionRefused(logger, listener, remote, detail, count);
        }
    }
}
