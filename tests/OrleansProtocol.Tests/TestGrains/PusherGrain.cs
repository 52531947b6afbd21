namespace OrleansProtocol.Tests.TestGrains;

public interface IPusherGrain : IGrainWithGuidKey
{
    Task<string> Push(ConnectionInfo connection, int count);
}

/// <summary>Writes numbered lines to a connection from wherever this grain lives, one awaited call at a time.</summary>
public sealed class PusherGrain : Grain, IPusherGrain
{
    public async Task<string> Push(ConnectionInfo connection, int count)
    {
        var target = GrainFactory.GetConnection(connection);
        for (var i = 0; i < count; i++)
        {
            await target.Send(System.Text.Encoding.ASCII.GetBytes($"pushed {i}\n"));
        }

        return RuntimeIdentity;
    }
}
