/**
 * Pulumi mocks that answer like AWS would, closely enough for previews, policies and the offline
 * engine: deterministic ids, ARNs in the environment's account and region, an ALB DNS name, an ECR
 * repository URL and an image digest derived from what was built. Nothing here talks to a cloud.
 */
import type * as pulumi from "@pulumi/pulumi";
import { createHash } from "crypto";
import { REGION_ZONES } from "../../infra/regions";

/** `us-east-1` → `use1`, the prefix of zone ids (`use1-az1`). */
function regionCode(region: string): string {
  const [geo, dir, n] = region.split("-");
  const short = /^(north|south)(east|west)$/.exec(dir);
  return `${geo}${short ? short[1][0] + short[2][0] : dir[0]}${n}`;
}

export interface MockTarget {
  readonly region: string;
  readonly accountId: string;
}

function hash(...parts: unknown[]): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex");
}

/** The last segment of a type token: `aws:ec2/vpc:Vpc` → `vpc`. */
function service(type: string): string {
  return type.split(":")[1]?.split("/")[0] ?? "unknown";
}

/** Outputs for one resource: the inputs echoed back, plus what AWS computes. */
export function mockOutputs(type: string, name: string, inputs: Record<string, any>, t: MockTarget): { id: string; state: Record<string, any> } {
  const h = hash(type, name).slice(0, 17);
  const id = `${name}-${h.slice(0, 8)}`;
  const arnFor = (svc: string, resource: string) => `arn:aws:${svc}:${t.region}:${t.accountId}:${resource}`;
  const state: Record<string, any> = { ...inputs, arn: arnFor(service(type), `${type.split(":").pop()?.toLowerCase()}/${id}`) };
  switch (type) {
    case "aws:ec2/vpc:Vpc":
      return { id: `vpc-${h}`, state: { ...state, arn: arnFor("ec2", `vpc/vpc-${h}`) } };
    case "aws:ec2/subnet:Subnet":
      return { id: `subnet-${h}`, state: { ...state, arn: arnFor("ec2", `subnet/subnet-${h}`) } };
    case "aws:ec2/securityGroup:SecurityGroup":
      return { id: `sg-${h}`, state: { ...state, arn: arnFor("ec2", `security-group/sg-${h}`) } };
    case "aws:ec2/internetGateway:InternetGateway":
      return { id: `igw-${h}`, state };
    case "aws:ec2/natGateway:NatGateway":
      return { id: `nat-${h}`, state };
    case "aws:ec2/eip:Eip":
      return { id: `eipalloc-${h}`, state: { ...state, publicIp: `198.51.100.${parseInt(h.slice(0, 2), 16) % 254 + 1}` } };
    case "aws:ec2/routeTable:RouteTable":
      return { id: `rtb-${h}`, state };
    case "aws:iam/role:Role":
      return { id: inputs.name ?? id, state: { ...state, arn: `arn:aws:iam::${t.accountId}:role/${inputs.name ?? id}`, name: inputs.name ?? id } };
    case "aws:iam/policy:Policy":
      return { id, state: { ...state, arn: `arn:aws:iam::${t.accountId}:policy/${id}` } };
    case "aws:cloudwatch/logGroup:LogGroup": {
      const groupName = inputs.name ?? `/${id}`;
      return { id: groupName, state: { ...state, name: groupName, arn: arnFor("logs", `log-group:${groupName}`) } };
    }
    case "aws:sns/topic:Topic":
      return { id: arnFor("sns", id), state: { ...state, arn: arnFor("sns", id), name: id } };
    case "aws:ecr/repository:Repository": {
      const repoName = inputs.name ?? id;
      return { id: repoName, state: { ...state, name: repoName, arn: arnFor("ecr", `repository/${repoName}`), repositoryUrl: `${t.accountId}.dkr.ecr.${t.region}.amazonaws.com/${repoName}`, registryId: t.accountId } };
    }
    case "docker:index/image:Image": {
      const imageName: string = inputs.imageName ?? `${name}:unknown`;
      const repo = imageName.replace(/[:@][^/]*$/, "");
      const digest = `sha256:${hash(imageName, inputs.build ?? null)}`;
      return { id: `${repo}@${digest}`, state: { ...state, repoDigest: `${repo}@${digest}`, baseImageName: imageName } };
    }
    case "aws:ecs/cluster:Cluster": {
      const clusterName = inputs.name ?? id;
      return { id: arnFor("ecs", `cluster/${clusterName}`), state: { ...state, name: clusterName, arn: arnFor("ecs", `cluster/${clusterName}`) } };
    }
    case "aws:ecs/taskDefinition:TaskDefinition": {
      const revision = parseInt(hash(inputs.containerDefinitions ?? "").slice(0, 4), 16) % 997 + 1;
      const arn = arnFor("ecs", `task-definition/${inputs.family ?? id}:${revision}`);
      return { id: arn, state: { ...state, arn, revision, arnWithoutRevision: arnFor("ecs", `task-definition/${inputs.family ?? id}`) } };
    }
    case "aws:ecs/service:Service": {
      const serviceName = inputs.name ?? id;
      return { id: arnFor("ecs", `service/${serviceName}`), state: { ...state, name: serviceName } };
    }
    case "aws:lb/loadBalancer:LoadBalancer": {
      const lbName = (inputs.name ?? id).slice(0, 32);
      const arn = arnFor("elasticloadbalancing", `loadbalancer/app/${lbName}/${h.slice(0, 16)}`);
      return { id: arn, state: { ...state, name: lbName, arn, arnSuffix: `app/${lbName}/${h.slice(0, 16)}`, dnsName: `${lbName}-${parseInt(h.slice(0, 8), 16)}.${t.region}.elb.amazonaws.com`, zoneId: "Z35SXDOTRQ7X7K" } };
    }
    case "aws:lb/targetGroup:TargetGroup": {
      const tgName = (inputs.name ?? id).slice(0, 32);
      const arn = arnFor("elasticloadbalancing", `targetgroup/${tgName}/${h.slice(0, 16)}`);
      return { id: arn, state: { ...state, name: tgName, arn, arnSuffix: `targetgroup/${tgName}/${h.slice(0, 16)}` } };
    }
    case "aws:lb/listener:Listener": {
      const arn = arnFor("elasticloadbalancing", `listener/app/${name}/${h.slice(0, 16)}`);
      return { id: arn, state: { ...state, arn } };
    }
    case "aws:rds/instance:Instance": {
      // The managed secret's ARN ends, like every real secret ARN, in `-` and six random characters.
      const address = `${inputs.identifier ?? id}.${h.slice(0, 12)}.${t.region}.rds.amazonaws.com`;
      const port = inputs.port ?? (inputs.engine === "mysql" ? 3306 : 5432);
      return { id: inputs.identifier ?? id, state: { ...state, address, port, endpoint: `${address}:${port}`, arn: arnFor("rds", `db:${inputs.identifier ?? id}`), masterUserSecrets: inputs.manageMasterUserPassword ? [{ secretArn: arnFor("secretsmanager", `secret:rds!db-${h.slice(0, 8)}-${h.slice(8, 11)}Xy${h.slice(11, 12)}`), secretStatus: "active", kmsKeyId: inputs.masterUserSecretKmsKeyId }] : [] } };
    }
    case "aws:kms/key:Key": {
      // KMS key ids are UUIDs; aliases and encrypted resources refer to the key by id or ARN.
      const keyId = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(1, 4)}-${h.slice(4, 16)}`;
      return { id: keyId, state: { ...state, keyId, arn: arnFor("kms", `key/${keyId}`) } };
    }
    case "aws:rds/subnetGroup:SubnetGroup": {
      // Auto-named by the provider in a real run; the instance refers to the group by this name.
      const groupName = inputs.name ?? id;
      return { id: groupName, state: { ...state, name: groupName, arn: arnFor("rds", `subgrp:${groupName}`) } };
    }
    case "aws:s3/bucket:Bucket": {
      const bucketName = inputs.bucket ?? `${name}-${h.slice(0, 7)}`;
      return { id: bucketName, state: { ...state, bucket: bucketName, arn: `arn:aws:s3:::${bucketName}`, bucketDomainName: `${bucketName}.s3.amazonaws.com` } };
    }
    case "random:index/randomId:RandomId": {
      // Deterministic offline: the same name and keepers give the same id, new keepers a new one.
      const bytes = Number(inputs.byteLength ?? 8);
      const hex = hash(name, inputs.keepers ?? null).slice(0, bytes * 2);
      return { id: Buffer.from(hex, "hex").toString("base64url"), state: { ...state, hex, dec: BigInt(`0x${hex}`).toString(), b64Url: Buffer.from(hex, "hex").toString("base64url"), b64Std: Buffer.from(hex, "hex").toString("base64") } };
    }
    case "aws:acm/certificate:Certificate": {
      const certId = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(1, 4)}-${h.slice(4, 16)}`;
      const arn = arnFor("acm", `certificate/${certId}`);
      const domainName: string = inputs.domainName ?? "example.com";
      return {
        id: arn,
        state: { ...state, arn, status: "PENDING_VALIDATION", domainValidationOptions: [{ domainName, resourceRecordName: `_${h.slice(0, 32)}.${domainName}.`, resourceRecordType: "CNAME", resourceRecordValue: `_${h.slice(32, 64)}.acm-validations.aws.` }] },
      };
    }
    case "aws:acm/certificateValidation:CertificateValidation":
      return { id: `${inputs.certificateArn ?? id}`, state: { ...state, certificateArn: inputs.certificateArn } };
    case "aws:route53/record:Record": {
      const fqdn = String(inputs.name ?? name).replace(/\.$/, "");
      return { id: `${inputs.zoneId}_${fqdn}_${inputs.type}`, state: { ...state, fqdn } };
    }
    default:
      return { id, state };
  }
}

/** Answers for provider functions the program calls. */
export function mockCall(token: string, inputs: Record<string, any>, t: MockTarget): Record<string, any> {
  switch (token) {
    case "aws:index/getCallerIdentity:getCallerIdentity":
      return { accountId: t.accountId, arn: `arn:aws:iam::${t.accountId}:user/offline`, userId: "OFFLINE" };
    case "aws:index/getRegion:getRegion":
      return { name: t.region, region: t.region, id: t.region };
    case "aws:index/getPartition:getPartition":
      return { partition: "aws", dnsSuffix: "amazonaws.com" };
    case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
      return { userName: "AWS", password: "offline-registry-password", proxyEndpoint: `https://${t.accountId}.dkr.ecr.${t.region}.amazonaws.com`, authorizationToken: "offline" };
    case "aws:elb/getServiceAccount:getServiceAccount":
      return { id: "127311923021", arn: "arn:aws:iam::127311923021:root" };
    case "aws:index/getAvailabilityZones:getAvailabilityZones": {
      // The region model stands in for the account's zones offline and in validation.
      const names = [...(REGION_ZONES[t.region] ?? [])];
      return { id: t.region, names, zoneIds: names.map((n) => `${regionCode(t.region)}-az${n.charCodeAt(n.length - 1) - 96}`), groupNames: names.map(() => t.region) };
    }
    case "aws:iam/getPolicyDocument:getPolicyDocument":
      return { json: JSON.stringify({ Version: "2012-10-17", Statement: inputs.statements ?? [] }) };
    default:
      return { ...inputs };
  }
}

export function createMocks(target: MockTarget): pulumi.runtime.Mocks {
  return {
    newResource: (args) => mockOutputs(args.type, args.name, args.inputs, target),
    call: (args) => mockCall(args.token, args.inputs, target),
  };
}
