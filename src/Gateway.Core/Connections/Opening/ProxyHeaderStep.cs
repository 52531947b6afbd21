using System.IO.Pipelines;
using System.Net;

namespace OrleansProtocol.Gateway.Connections.Opening;

/// <summary>
/// The first opening step of a listener behind a load balancer: the PROXY protocol header (v1 or v2) the balancer sends
/// before anything of the client's, read off the input and nothing after it. Runs before the connection has a grain.
/// </summary>
internal static class ProxyHeaderStep
{
    /// <summary>
    /// Reads the header from <paramref name="input"/>. Anything else — an untrusted sender, a malformed, truncated or
    /// late header — is a failure: the caller drops the connection.
    /// </summary>
    /// <returns>The header, or why there is none.</returns>
    public static async Task<(ProxyHeader Header, string? Failure)> ReadAsync(
        PipeReader input, IPEndPoint? remote, IReadOnlyList<IPNetwork> trusted, TimeSpan timeout, CancellationToken deadline)
    {
        if (remote is null || !trusted.Any(n => n.Contains(remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address)))
        {
            return (default, $"A PROXY header from {remote}, outside the trusted networks, is refused.");
        }

        try
        {
            while (true)
            {
                var result = await input.ReadAsync(deadline);
                var buffer = result.Buffer;
                var status = ProxyProtocolParser.TryParse(buffer, out var header, out var consumed);
                if (status == ProxyParseStatus.Done)
                {
                    input.AdvanceTo(buffer.GetPosition(consumed));
                    return (header, null);
                }

                input.AdvanceTo(buffer.Start, buffer.End);
                if (status == ProxyParseStatus.Invalid)
                {
                    return (default, "The PROXY protocol header is malformed.");
                }

                if (result.IsCompleted)
                {
                    return (default, "The connection ended inside its PROXY protocol header.");
                }
            }
        }
        catch (OperationCanceledException)
        {
            return (default, $"No complete PROXY protocol header within {timeout}.");
        }
        catch (Exception ex)
        {
            return (default, $"Reading the PROXY protocol header failed: {ex.Message}");
        }
    }
}
