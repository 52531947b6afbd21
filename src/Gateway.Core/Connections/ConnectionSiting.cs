namespace OrleansProtocol.Gateway.Connections;

/// <summary>Where a listener's connection grains go (<see cref="ConnectionPlacement"/>), decided per connection.</summary>
internal sealed class ConnectionSiting(ConnectionPlacement placement, SiloAddress localSilo, IClusterMembershipService membership)
{
    public SiloAddress LocalSilo => localSilo;

    /// <summary><see cref="LocalSilo"/> as every connection's <see cref="ConnectionInfo.GatewaySilo"/> spells it, made once.</summary>
    public string LocalSiloName { get; } = localSilo.ToParsableString();

    /// <summary>The silo for a new connection's grain, or null to let the grain class's placement decide (local).</summary>
    public SiloAddress? PickSilo(string connectionId)
    {
        if (placement == ConnectionPlacement.Local)
        {
            return null;
        }

        var active = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active)
            .Select(m => m.SiloAddress)
            .OrderBy(s => s.ToParsableString(), StringComparer.Ordinal)
            .ToArray();
        if (placement == ConnectionPlacement.Remote)
        {
            var others = active.Where(s => !s.Equals(localSilo)).ToArray();
            active = others.Length > 0 ? others : active;
        }

        return active.Length == 0 ? null : placement switch
        {
            ConnectionPlacement.Hash => active[(int)((uint)StableHash(connectionId) % (uint)active.Length)],
            _ => active[Random.Shared.Next(active.Length)],
        };
    }

    private static int StableHash(string value)
    {
        // string.GetHashCode is randomized per process; every silo must agree.
        var hash = 17;
        foreach (var ch in value)
        {
            hash = unchecked((hash * 31) + ch);
        }

        return hash;
    }
}
