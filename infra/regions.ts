/**
 * The region model: how many availability zones an environment may ask for in each supported
 * region, and the slot names its subnets are named after. It is NOT where subnets go on AWS: zone
 * names map to different physical zones per account, and an account may lack some, so the Network
 * reads the account's zones at deploy time (`aws.getAvailabilityZones`). This table answers that
 * lookup only offline and in validation, and lets a file asking for more zones than the region has
 * be refused at load.
 */
export const REGION_ZONES: Readonly<Record<string, readonly string[]>> = {
  "us-east-1": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"],
  "us-east-2": ["us-east-2a", "us-east-2b", "us-east-2c"],
  "us-west-1": ["us-west-1b", "us-west-1c"],
  "us-west-2": ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"],
  "ca-central-1": ["ca-central-1a", "ca-central-1b", "ca-central-1d"],
  "eu-west-1": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
  "eu-west-2": ["eu-west-2a", "eu-west-2b", "eu-west-2c"],
  "eu-central-1": ["eu-central-1a", "eu-central-1b", "eu-central-1c"],
  "eu-north-1": ["eu-north-1a", "eu-north-1b", "eu-north-1c"],
  "ap-southeast-1": ["ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1c"],
  "ap-southeast-2": ["ap-southeast-2a", "ap-southeast-2b", "ap-southeast-2c"],
  "ap-northeast-1": ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"],
  "sa-east-1": ["sa-east-1a", "sa-east-1b", "sa-east-1c"],
};

/** The first `count` zones of `region`; throws when the region is unknown or has fewer zones. */
export function zonesFor(region: string, count: number): string[] {
  const zones = REGION_ZONES[region];
  if (!zones) throw new Error(`unknown region "${region}"`);
  if (count > zones.length) throw new Error(`${region} has ${zones.length} availability zones, ${count} requested`);
  return zones.slice(0, count);
}
